"""The report's stylesheet, inlined into report.html (no external CSS)."""

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bg: #f5f7fa; --accent: #2f6fab; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); line-height: 1.45;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC",
  "WenQuanYi Zen Hei", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 12px; }
.muted, .stat-note, small { color: var(--muted); }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.stat { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.stat-name { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.stat-value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat-note { font-size: 12px; }
.warnings { background: #fffbea; border: 1px solid #f0d98c; border-radius: 8px;
  padding: 10px 14px 10px 32px; margin: 14px 0 0; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.histogram { background: #fff; border: 1px solid var(--line); border-radius: 8px; max-width: 100%; height: auto; }
.histogram .bar { fill: var(--accent); } .histogram .grid { stroke: #eef2f6; }
.histogram .axis { stroke: #9aa5b1; } .histogram text { font-size: 11px; fill: var(--muted); }
.histogram .h-title { font-size: 13px; font-weight: 600; fill: var(--ink); } .histogram .label { font-size: 12px; }
.histogram .marker { stroke: var(--bad); stroke-dasharray: 4 3; } .histogram .marker-label { fill: var(--bad); }
.histogram .empty { font-size: 14px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); width: 100%; }
th, td { padding: 7px 12px; border-bottom: 1px solid var(--line); text-align: left; }
thead th { background: #eef2f6; font-size: 12px; text-transform: uppercase; letter-spacing: .03em;
  color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.card { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
.card.flagged { border-color: #f3b3ad; }
.thumb { display: block; width: 160px; height: 160px; margin: 0 auto 8px; object-fit: contain;
  background: #eef2f6; border-radius: 4px; }
.placeholder { display: flex; flex-direction: column; justify-content: center; align-items: center;
  gap: 6px; padding: 10px; border: 2px dashed #cbd2d9; text-align: center; overflow: hidden; overflow-wrap: anywhere; }
.placeholder span { font-weight: 600; color: var(--muted); } .placeholder small { font-size: 11px; }
.card-id { font-weight: 600; overflow-wrap: anywhere; }
.chip { font-weight: 400; font-size: 11px; background: #e6f0fa; color: var(--accent);
  border-radius: 10px; padding: 1px 7px; }
.scores { display: grid; grid-template-columns: auto 1fr; gap: 0 8px; margin: 6px 0; font-size: 12px; }
.scores dt { color: var(--muted); }
.scores dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.prompt { margin: 6px 0; display: -webkit-box; -webkit-line-clamp: 4; -webkit-box-orient: vertical;
  overflow: hidden; overflow-wrap: anywhere; }
details { font-size: 12px; color: var(--muted); } .raw { overflow-wrap: anywhere; }
.regenerate { margin: 6px 0 0; padding: 0; list-style: none; }
.regenerate li { display: inline-block; margin: 2px 4px 0 0; padding: 1px 7px; border-radius: 10px;
  font-size: 11px; background: #fde8e7; color: var(--bad); }
"""
