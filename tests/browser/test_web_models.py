"""The chat page's model picker, in Chromium, against one `whale serve` of two models: the
default (plain) and a random-weight model with R1-Distill's vocabulary in the R1 format (a
reasoning model). The picker lists both; the question goes to the chosen one (its "model"); a
reasoning model turns DeepThink on, and DeepThink on a plain model switches to the reasoning one;
the choice is kept across a reload. Screenshot: web-models.png."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "py"))
from conftest import reference_json, synth  # noqa: E402
from test_web_page import ask, browser, goto, new_page, serve, shot, stop_server, wait_answered  # noqa: E402,F401


def asked_model(page, question):
    """Ask question in a new chat; the model the page's request named."""
    with page.expect_request("**/v1/chat/completions") as req:
        page.click("#new-chat")
        ask(page, question)
    wait_answered(page)
    return json.loads(req.value.post_data)["model"]


def test_model_picker_routes_and_deepthink_follows(browser, tmp_path):  # noqa: F811
    vocab = reference_json("deepseek-r1-distill-qwen-7b", tmp_path)
    r1 = synth(vocab, tmp_path / "r1tiny.gguf")
    p, base = serve("-m", "default", "-m", str(r1), "--ctx", "384", "--parallel", "2")
    try:
        page = new_page(browser, base)
        goto(page, "/")
        assert page.is_visible("#model-pick") and not page.is_visible("#model")
        options = page.locator("#model-pick option").all_inner_texts()
        assert options == ["default", "r1tiny · reasoning"]
        assert page.input_value("#model-pick") == "default"
        # a plain model: DeepThink is off, and offers the reasoning model
        assert page.get_attribute("#think", "aria-pressed") == "false" and page.is_enabled("#think")
        assert "r1tiny" in page.get_attribute("#think", "title")
        page.click("#think")
        assert page.input_value("#model-pick") == "r1tiny"
        assert page.get_attribute("#think", "aria-pressed") == "true"
        page.select_option("#budget", "256")
        assert asked_model(page, "Why is the sky blue?") == "r1tiny"
        page.wait_for_selector("#messages details.thought")  # it reasoned
        # back to the plain model by the picker: DeepThink off, the question goes there
        page.select_option("#model-pick", "default")
        assert page.get_attribute("#think", "aria-pressed") == "false"
        assert asked_model(page, "Reply with the word yes.") == "default"
        assert page.locator("#messages details.thought").count() == 0
        shot(page, "models")
        # picking the reasoning model turns DeepThink on; the choice survives a reload
        page.select_option("#model-pick", "r1tiny")
        assert page.get_attribute("#think", "aria-pressed") == "true"
        goto(page, "/")
        assert page.input_value("#model-pick") == "r1tiny"
        assert not page.errors
        page.context.close()
    finally:
        stop_server(p)
