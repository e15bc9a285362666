"""The report's distribution section: how far the generated images are from the reference photos,
overall and per category (result_distribution.json, written by main.py --reference)."""

from __future__ import annotations

import json
from pathlib import Path

from aigc_eval.decisions.report import esc, fmt
from aigc_eval.io.csv_io import InputError


def read_distribution(path: Path) -> dict[str, object]:
    """result_distribution.json as a dict; InputError when it is not one."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(result, dict) or not isinstance(result.get("comparisons"), dict):
            raise ValueError("no comparisons")
        return result
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a distribution result of main.py --reference ({exc})") from None


def distribution_section(result: dict[str, object]) -> str:
    """Which features FID and KID used, a table of FID, KID and CMMD with the sample sizes and
    warnings, then the definitions."""
    head = "".join(f"<th>{name}</th>" for name in
                   ("set", "generated", "reference", "FID", "KID", "CMMD", "warning"))
    body = []
    for name, entry in result["comparisons"].items():  # type: ignore[union-attr]
        kid = f"{fmt(entry.get('kid_mean'), 4)} ± {fmt(entry.get('kid_std'), 4)}"
        body.append(f'<tr data-set="{esc(name)}"><th scope="row">{esc(name)}</th>'
                    f'<td class="num">{fmt(entry.get("n_generated"), 0)}</td><td class="num">{fmt(entry.get("n_reference"), 0)}</td>'
                    f'<td class="num">{fmt(entry.get("fid"), 2)}</td><td class="num">{kid}</td>'
                    f'<td class="num">{fmt(entry.get("cmmd"), 3)}</td><td>{esc(entry.get("warning") or "")}</td></tr>')
    notes = "".join(f"<li><b>{esc(key.upper())}</b>: {esc(text)}</li>"
                    for key, text in (result.get("definitions") or {}).items())  # type: ignore[union-attr]
    fid_on: dict = result.get("fid_features") or {}  # type: ignore[assignment]  # absent before --fid-features
    name, extractor = esc(fid_on.get("name", "")), esc(fid_on.get("extractor", ""))
    caption = (f'<p class="muted fid-features" data-fid-features="{name}">FID and KID features: <b>{name}</b>, '
               f'{extractor}</p>' if fid_on else "")
    return (f'{caption}<table class="categories distribution"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f'</table><ul class="muted">{notes}</ul>')
