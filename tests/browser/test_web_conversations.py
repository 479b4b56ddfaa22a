"""The chat page's conversation list, in Chromium: rename a conversation (kept across a reload,
Esc keeps the old title), search the list by title and, for conversations kept in the browser, by
what was said; titles never exceed the 200 UTF-8 bytes the server keeps. Answers come from a
stand-in for /v1/chat/completions (see test_web_render.py)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_web_page import ask, browser, goto, local, new_page, wait_answered  # noqa: E402,F401  (fixtures)
from test_web_render import answer_with  # noqa: E402


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
