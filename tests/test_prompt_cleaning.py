"""clean_prompt on the payload shapes real listened prompts take, in Chinese and English."""

import json
import random

import pytest

from aigc_eval.scoring.prompt_cleaning import (
    DEFAULT_RULES,
    clean_prompt,
    label_subject,
    load_rules,
    load_subjects,
)


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize(
    "raw, expected",
    [
        # chat-message arrays: system messages, assistant replies and later command turns are dropped
        (dumps({"messages": [
            {"role": "system", "content": "你是一个电商主图设计助手，只输出背景描述，不要输出其他内容。"},
            {"role": "user", "content": "给我做一张薰衣草花田背景的主图"},
            {"role": "assistant", "content": "好的，已为您生成薰衣草花田背景。"},
            {"role": "user", "content": "不好看，重画"}]}), "薰衣草花田背景"),
        (dumps([{"role": "system", "content": "You are a product photo assistant."},
                {"role": "user", "content": "Please generate a marble background with gold accents"},
                {"role": "assistant", "content": "Here it is."},
                {"role": "user", "content": "not good, generate another one"}]), "marble background with gold accents"),
        # the last descriptive user turn wins
        (dumps({"messages": [{"role": "user", "content": "雪地背景"}, {"role": "user", "content": "再来一张，换成绿色森林背景"}]}),
         "绿色森林背景"),
        # content as a list of parts: text kept, images dropped
        (dumps([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://img.example.com/cake.png"}},
                                              {"type": "text", "text": "换成大理石台面配金色装饰"}]}]), "大理石台面配金色装饰"),
        (dumps({"messages": [{"role": "user", "content": [{"type": "input_image", "image": "base64..."},
                                                           {"type": "text", "text": "a wooden table in a sunny kitchen"}]}]}),
         "a wooden table in a sunny kitchen"),
        # JSON stringified inside JSON, with generation parameters and flow fields beside the prompt
        (dumps({"flow_id": "f-19", "node": "bg_gen", "input": dumps({
            "prompt": "绿色森林背景，清新自然", "negative_prompt": "模糊，低质量，水印", "width": 1024, "height": 1024,
            "seed": 42, "steps": 30, "cfg_scale": 7, "sampler_name": "euler_a"})}), "绿色森林背景，清新自然"),
        (dumps({"request": {"params": {"prompt": "snowy mountain background, morning light", "negative_prompt": "blurry",
                                       "scheduler": "DPM++ 2M Karras", "seed": 7}}, "callback": "https://x/cb"}),
         "snowy mountain background, morning light"),
        (dumps(dumps({"prompt": "海边沙滩日落"})), "海边沙滩日落"),
        # tagged plain-text transcripts
        ("系统：你是设计助手\n用户：樱桃木地板背景，温馨的家居氛围\n助手：好的，这就为您生成", "樱桃木地板背景，温馨的家居氛围"),
        ("Human: a lavender field at sunset\nAssistant: Sure, generating now.", "a lavender field at sunset"),
        ("[user]: 粉色甜品台背景 [assistant]: 已生成 [user]: 不行", "粉色甜品台背景"),
        # malformed JSON is read as far as it goes, else treated as text
        ('{"messages": [{"role": "system", "content": "只输出描述"}, {"role": "user", "content": "雪地背景，冬日清晨的阳光"}',
         "雪地背景，冬日清晨的阳光"),
        ('{"prompt": "海边沙滩日落", "width": 10', "海边沙滩日落"),
        ("{大理石台面", "大理石台面"),
        # control markup
        ("<think>用户想要温馨一点的感觉，我应该描述客厅</think>温馨的家居客厅背景", "温馨的家居客厅背景"),
        ("<|im_start|>user\n薰衣草花田<|im_end|>", "薰衣草花田"),
        # request phrasing around a description
        ("给我做一张樱桃木地板背景的主图", "樱桃木地板背景"),
        ("再来一张，换成雪地背景", "雪地背景"),
        ("帮我把背景换成粉色的甜品台吧", "粉色的甜品台"),
        ("I want an image of a red bicycle on a grass field", "a red bicycle on a grass field"),
        ("香芋薰衣草", "香芋薰衣草"),
    ],
)
def test_payload_shapes(raw, expected):
    assert clean_prompt(raw) == expected


@pytest.mark.parametrize(
    "command",
    ["不好看，重画", "换个风格再来", "不行", "重新生成一张", "再来一张吧", "太丑了", "更高级一点", "算了，谢谢",
     "not good, generate another one", "do it again", "try again please", "make it more upscale", "one more", "OK, thanks"],
)
def test_command_turns_leave_nothing(command):
    assert clean_prompt(command) == ""
    assert clean_prompt(dumps({"messages": [{"role": "user", "content": command}]})) == ""


@pytest.mark.parametrize("raw", ["", "   ", "null", "[]", "{}", "12345", dumps({"seed": 1, "width": 512}),
                                 dumps({"messages": [{"role": "system", "content": "系统提示"}]})])
def test_nothing_visual_gives_empty(raw):
    assert clean_prompt(raw) == ""


def test_never_raises_on_hostile_input():
    rng = random.Random(2020)
    alphabet = '{}[]":,\\ 背景用户：assistant<think>\n\x00\ud800'
    samples = ["[" * 5000 + "]" * 5000, '{"a":' * 3000, "\x00\x01", "\ud800", None, 42, {"prompt": "x"}]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(500)]
    for raw in samples:
        assert isinstance(clean_prompt(raw), str)
    assert clean_prompt({"prompt": "木桌背景"}) == "木桌背景"


def test_word_lists_are_extendable(tmp_path):
    rules = json.loads(DEFAULT_RULES.read_text(encoding="utf-8"))
    assert clean_prompt("搞快点") == "搞快点"
    rules["command_clauses"].append("搞快点")
    custom = tmp_path / "rules.json"
    custom.write_text(dumps(rules), encoding="utf-8")
    assert clean_prompt("搞快点", load_rules(custom)) == ""
    assert clean_prompt("搞快点，换成雪地背景", load_rules(custom)) == "雪地背景"


def test_bad_rules_file_names_the_file(tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="rules.json: not a usable prompt rules file"):
        load_rules(bad)


def test_subject_labelling(tmp_path):
    subjects = load_subjects()
    assert label_subject("香芋薰衣草", "蛋糕", subjects) == "香芋薰衣草，蛋糕"
    assert label_subject("草莓奶油蛋糕，粉色背景", "蛋糕", subjects) == "草莓奶油蛋糕，粉色背景"
    assert label_subject("雪地背景", "未知类目", subjects) == "雪地背景"
    assert label_subject("", "蛋糕", subjects) == ""
    custom = tmp_path / "subjects.json"
    custom.write_text(dumps({"shoes": "sneakers"}), encoding="utf-8")
    assert label_subject("a beach at sunset", "shoes", load_subjects(custom)) == "a beach at sunset, sneakers"


def test_consumer_util_offers_clean_prompt():
    from aigc_eval.collection import messages as consumer_util
    from aigc_eval.scoring import prompt_cleaning
    assert consumer_util.clean_prompt is prompt_cleaning.clean_prompt
    assert consumer_util.clean_prompt("再来一张，换成雪地背景") == "雪地背景"
