"""The chat page's conversations, in Chromium: rename one (kept across a reload, Esc keeps the old
title), search the list by title and, for conversations kept in the browser, by what was said;
titles never exceed the 200 UTF-8 bytes the server keeps; text files attached to a question (too
large and binary ones refused) reach the model in DeepSeek's upload framing and show as chips; any
question can be edited, its earlier versions kept with what followed them (< 1/2 >); with accounts, a
conversation shared by a read-only link that anyone can open (a copy: what is asked later stays
private) and its owner can stop. Answers come from a stand-in for /v1/chat/completions (see
test_web_render.py)."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_web_page import (ask, browser, goto, local, new_page, serve, shot, sign_up, stop_server,  # noqa: E402,F401
                           wait_answered)
from test_web_render import MATH, answer_with  # noqa: E402


def chat(page, question, answer):
    page.click("#new-chat")
    answer_with(page, answer)
    ask(page, question)
    wait_answered(page)
    page.wait_for_function("(q) => [...document.querySelectorAll('#conv-list .conv a')]"
                           ".some(a => a.textContent === q)", arg=question)


def titles(page):
    return page.locator("#conv-list .conv a").all_inner_texts()


def test_rename_and_search(browser, local):  # noqa: F811
    page = new_page(browser, local)
    goto(page, "/")
    chat(page, "Tell me about apples", "Apples grow on trees in orchards.")
    chat(page, "Tell me about bananas", "Bananas are berries, botanically.")
    assert titles(page) == ["Tell me about bananas", "Tell me about apples"]

    # rename the older one from its row: Enter keeps the new title, which comes first (a change)
    row = page.locator("#conv-list .conv", has_text="apples")
    row.hover()
    row.locator("button[title='Rename']").click()
    box = page.locator("#conv-list .conv input")
    assert box.input_value() == "Tell me about apples"
    box.fill("Fruit: apples")
    box.press("Enter")
    page.wait_for_function("() => [...document.querySelectorAll('#conv-list .conv a')]"
                           ".some(a => a.textContent === 'Fruit: apples')")
    assert titles(page) == ["Fruit: apples", "Tell me about bananas"]
    # Esc keeps the old title
    row = page.locator("#conv-list .conv", has_text="bananas")
    row.hover()
    row.locator("button[title='Rename']").click()
    page.locator("#conv-list .conv input").fill("something else")
    page.locator("#conv-list .conv input").press("Escape")
    assert titles(page) == ["Fruit: apples", "Tell me about bananas"]
    # kept across a reload, and the open conversation's header follows a rename
    goto(page, "/")
    assert titles(page) == ["Fruit: apples", "Tell me about bananas"]
    page.click("#conv-list .conv a:text('Fruit: apples')")
    page.wait_for_selector("#messages .msg.assistant .answer")
    row = page.locator("#conv-list .conv.active")
    row.locator("button[title='Rename']").click()
    page.locator("#conv-list .conv input").fill("Orchard fruit")
    page.locator("#conv-list .conv input").press("Enter")
    page.wait_for_selector("#title:text('Orchard fruit')")

    # search: by title, by what was said (kept in this browser), every word, any case
    page.fill("#conv-search", "ORCHARD")
    assert titles(page) == ["Orchard fruit"]
    page.fill("#conv-search", "berries")  # only in the bananas answer
    assert titles(page) == ["Tell me about bananas"]
    page.fill("#conv-search", "tell berries")
    assert titles(page) == ["Tell me about bananas"]
    page.fill("#conv-search", "kiwi")
    assert titles(page) == [] and page.is_visible("#conv-list .none")
    page.fill("#conv-search", "")
    assert len(titles(page)) == 2
    assert not page.errors
    page.context.close()


def test_titles_fit_the_server(browser, local):  # noqa: F811
    page = new_page(browser, local)
    goto(page, "/")
    question = "🐋" * 80  # 4 bytes each: 60 characters would be 240 bytes
    chat_title = None
    answer_with(page, "A whale.")
    ask(page, question)
    wait_answered(page)
    chat_title = page.locator("#conv-list .conv a").first.inner_text()
    assert chat_title and set(chat_title) == {"🐋"} and len(chat_title.encode()) <= 200
    row = page.locator("#conv-list .conv").first
    row.hover()
    row.locator("button[title='Rename']").click()
    page.locator("#conv-list .conv input").fill("é" * 150)  # 300 bytes
    page.locator("#conv-list .conv input").press("Enter")
    page.wait_for_function("() => document.querySelector('#conv-list .conv a')?.textContent.startsWith('é')")
    renamed = page.locator("#conv-list .conv a").first.inner_text()
    assert set(renamed) == {"é"} and len(renamed.encode()) <= 200
    assert not page.errors
    page.context.close()


def test_attach_text_files(browser, local):  # noqa: F811
    page = new_page(browser, local)
    goto(page, "/")
    sent = []

    def stand_in(route):
        sent.append(json.loads(route.request.post_data))
        sse = "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "It sorts a list."}}]})
        route.fulfill(status=200, body=sse + "\n\ndata: [DONE]\n\n", headers={"Content-Type": "text/event-stream"})
    page.route("**/v1/chat/completions", stand_in)
    code = "def f(xs):\n    return sorted(xs)\n"
    page.set_input_files("#file", files=[
        {"name": "sort.py", "mimeType": "text/x-python", "buffer": code.encode()},
        {"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * (128 * 1024 + 1)},
        {"name": "blob.bin", "mimeType": "application/octet-stream", "buffer": b"\x00\x01\xff\xfe"},
    ])
    # (files are read asynchronously: wait for the last one's verdict)
    page.wait_for_function("() => document.getElementById('banner-text').textContent.includes('blob.bin is not a text file')")
    assert page.locator("#attachments .file-chip").count() == 1  # the text file; the others refused
    page.set_input_files("#file", files=[{"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * (128 * 1024 + 1)}])
    page.wait_for_function("() => document.getElementById('banner-text').textContent.includes('big.txt is larger than 128 KB')")
    assert page.locator("#attachments .file-chip").count() == 1
    ask(page, "What does this do?")
    wait_answered(page)
    # the model gets the file framed as DeepSeek's page frames uploads, then the question
    content = sent[0]["messages"][-1]["content"]
    assert content == f"[file name]: sort.py\n[file content begin]\n{code}\n[file content end]\nWhat does this do?"
    # the question shows as its text with the file as a chip, also after a reload
    for _ in range(2):
        assert page.inner_text("#messages .msg.user .bubble") == "What does this do?"
        assert page.inner_text("#messages .msg.user .files .file-chip .name") == "sort.py"
        assert page.locator("#attachments .file-chip").count() == 0
        goto(page, "/")
        page.click("#conv-list .conv a")
        page.wait_for_selector("#messages .msg.user .files")
    # editing the question keeps its file
    page.click("#messages .msg.user .actions button:text('Edit')")
    assert page.locator("#messages .edit-box textarea").input_value() == "What does this do?"
    page.fill("#messages .edit-box textarea", "Explain it briefly.")
    page.click("#messages .edit-box button:text('Send')")
    wait_answered(page)
    assert sent[-1]["messages"][-1]["content"].startswith("[file name]: sort.py\n")
    assert sent[-1]["messages"][-1]["content"].endswith("[file content end]\nExplain it briefly.")
    assert not page.errors
    page.context.close()


def test_edit_any_question_keeps_versions(browser, local):  # noqa: F811
    page = new_page(browser, local)
    goto(page, "/")

    def echo(route):  # answers name the question they answer
        q = json.loads(route.request.post_data)["messages"][-1]["content"]
        sse = "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": f"answer to {q}"}}]})
        route.fulfill(status=200, body=sse + "\n\ndata: [DONE]\n\n", headers={"Content-Type": "text/event-stream"})
    page.route("**/v1/chat/completions", echo)

    def shown():
        return page.locator("#messages .msg .bubble, #messages .msg .answer").all_inner_texts()

    def version_label(i=0):
        return page.locator("#messages .msg.user").nth(i).locator(".versions .muted").inner_text()

    for q in ("one", "two"):
        ask(page, q)
        wait_answered(page)
    assert shown() == ["one", "answer to one", "two", "answer to two"]
    assert page.locator("#messages .versions").count() == 0
    # edit the first question (not only the last): what followed it goes into the old version
    page.locator("#messages .msg.user").first.locator(".actions button:text('Edit')").click()
    page.fill("#messages .edit-box textarea", "uno")
    page.click("#messages .edit-box button:text('Send')")
    wait_answered(page)
    assert shown() == ["uno", "answer to uno"] and version_label() == "2/2"
    page.click("#messages .msg.user .versions button[title='Previous version']")
    assert shown() == ["one", "answer to one", "two", "answer to two"] and version_label() == "1/2"
    # an edit inside the earlier version keeps its own versions; all of it survives a reload
    page.locator("#messages .msg.user").nth(1).locator(".actions button:text('Edit')").click()
    page.fill("#messages .edit-box textarea", "dos")
    page.click("#messages .edit-box button:text('Send')")
    wait_answered(page)
    assert shown() == ["one", "answer to one", "dos", "answer to dos"] and version_label(1) == "2/2"
    goto(page, "/")
    page.click("#conv-list .conv a")
    page.wait_for_selector("#messages .msg.user .versions")
    assert shown() == ["one", "answer to one", "dos", "answer to dos"]
    assert version_label(0) == "1/2" and version_label(1) == "2/2"
    page.click("#messages .msg.user .versions button[title='Next version']")
    assert shown() == ["uno", "answer to uno"]
    page.click("#messages .msg.user .versions button[title='Previous version']")
    page.locator("#messages .msg.user").nth(1).locator(".versions button[title='Previous version']").click()
    assert shown() == ["one", "answer to one", "two", "answer to two"]
    # the model is asked only the version shown
    with page.expect_request("**/v1/chat/completions") as req:
        page.click("#messages .msg.assistant >> nth=-1 >> .actions button:text('Regenerate')")
    sent = [m["content"] for m in json.loads(req.value.post_data)["messages"]]
    assert sent == ["one", "answer to one", "two"]
    wait_answered(page)
    assert not page.errors
    page.context.close()


def test_what_cannot_be_kept_is_refused_before_it_is_lost(browser, local):  # noqa: F811
    """A conversation holds at most 1 MiB (service/conversations.h): files that would pass it are
    refused when asked, with the reason, instead of a conversation that can no longer be saved."""
    page = new_page(browser, local)
    goto(page, "/")
    answer_with(page, "Read them.")
    files = [{"name": f"part{i}.txt", "mimeType": "text/plain", "buffer": (f"{i}" * 131_000).encode()}
             for i in range(4)]
    page.set_input_files("#file", files=files)
    page.wait_for_function("() => document.querySelectorAll('#attachments .file-chip').length === 4")
    ask(page, "first batch")
    wait_answered(page)
    page.set_input_files("#file", files=files)
    page.wait_for_function("() => document.querySelectorAll('#attachments .file-chip').length === 4")
    ask(page, "second batch")
    page.wait_for_function("() => document.getElementById('banner-text').textContent.includes('cannot be kept')")
    assert "at most 1 MB" in page.inner_text("#banner-text")
    assert page.locator("#messages .msg.user").count() == 1  # the first question stands, saved
    assert page.locator("#attachments .file-chip").count() == 4  # the files wait to be removed
    goto(page, "/")
    page.click("#conv-list .conv a")
    page.wait_for_selector("#messages .msg.user .files")
    assert page.locator("#messages .msg.user .files .file-chip").count() == 4
    assert not page.errors
    page.context.close()


def test_share_link_is_read_only_and_can_be_stopped(browser, tmp_path):  # noqa: F811
    p, base = serve("--accounts", "--db", str(tmp_path / "whale.db"), "--ctx", "256")
    try:
        alice = new_page(browser, base)
        sign_up(alice, "sharer@example.com", "correct horse battery")
        assert not alice.is_visible("#share")  # nothing to share yet
        answer_with(alice, MATH)
        ask(alice, "How do 60 and 45 compare?")
        wait_answered(alice)
        alice.wait_for_selector("#share:visible")
        alice.click("#share")
        alice.wait_for_selector("#share-panel:visible")
        url = alice.input_value("#share-url")
        assert url.startswith(base + "/#/s/") and "Anyone with this link" in alice.inner_text("#share-text")

        # someone without an account opens it: the conversation, read-only
        guest = new_page(browser, base)
        goto(guest, url.removeprefix(base))
        guest.wait_for_selector("#messages .msg.assistant math")
        assert guest.inner_text("#title") == "How do 60 and 45 compare?"
        assert guest.is_visible("#readonly-note") and not guest.is_visible("#composer")
        assert not guest.is_visible("#share") and not guest.is_visible("#view-auth")
        assert guest.locator("#messages button:text('Edit'), #messages button:text('Regenerate')").count() == 0
        shot(guest, "share")

        # what alice asks next stays hers: the link shows the copy it was made from
        answer_with(alice, "A private follow-up answer.")
        ask(alice, "PRIVATE follow-up")
        wait_answered(alice)
        guest.context.close()
        guest = new_page(browser, base)  # (a full load: goto to the same address with a #fragment is none)
        goto(guest, url.removeprefix(base))
        guest.wait_for_selector("#messages .msg.assistant")
        assert "PRIVATE" not in guest.inner_text("#messages") and guest.locator("#messages .msg").count() == 2

        # alice stops sharing: the link no longer opens
        alice.click("#share")  # sharing again is a new link (the old one stops)
        alice.wait_for_function("(u) => document.getElementById('share-url').value.startsWith(u.slice(0, -43))"
                                " && document.getElementById('share-url').value !== u", arg=url)
        new_url = alice.input_value("#share-url")
        alice.click("#share-stop")
        alice.wait_for_selector("#share-text:text('no longer works')")
        guest.context.close()
        guest = new_page(browser, base)
        goto(guest, new_url.removeprefix(base))
        guest.wait_for_selector("#banner:visible")
        assert "does not work" in guest.inner_text("#banner-text") and guest.locator("#messages .msg").count() == 0
        assert not alice.errors and not guest.errors
        alice.context.close()
        guest.context.close()
    finally:
        stop_server(p)

