#!/usr/bin/env python3
"""Drive the Portcullis console in real headless Chromium (Debian's, through Playwright).

Usage:
    console_browser.py BASE_URL APPROVER_KEY NOTES_DIR SCREENSHOT_DIR

BASE_URL is the server's origin (http://127.0.0.1:PORT). The server's config has: a tool
`count` (integer `n`, 1..5, one progress notification and one log line per second), a
notes folder NOTES_DIR with `meeting.md` (watched), a prompt `greet` (argument `name`),
and one call of `write_file` by another principal waiting for approval in the console.

Every page is captured under SCREENSHOT_DIR. Prints one line per check and "all checks
passed" at the end; exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 30_000

# Installed before any page script: records every CSP violation the page reports.
CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push({ directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample });
});
"""


def ok(what: str) -> None:
    print(f"ok   {what}", flush=True)


def main(argv: list[str]) -> int:
    base, key, notes_dir, shots = argv[1], argv[2], Path(argv[3]), Path(argv[4])
    shots.mkdir(parents=True, exist_ok=True)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    foreign: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(TIMEOUT_MS)
            page.add_init_script(CSP_LISTENER)
            page.on(
                "request",
                lambda r: foreign.append(r.url)
                if not (r.url.startswith(base) or r.url.startswith("data:"))
                else None,
            )
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Sign in: a wrong key is refused, the approver's accepted.
            page.goto(base + "/console")
            page.screenshot(path=str(shots / "01-signin.png"))
            page.fill("#token", "pcs_not-a-key")
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#signin-error")).to_contain_text("did not accept")
            ok("a wrong key is refused")
            page.fill("#token", key)
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#who")).to_contain_text("key:boss")
            expect(page.locator("#overview-facts")).to_contain_text("approver")
            expect(page.locator("#ready-table")).to_contain_text("notes")
            page.screenshot(path=str(shots / "02-overview.png"), full_page=True)
            ok("signed in; the overview shows the principal and readiness")

            # Tools: the generated form, a server-side field error.
            page.click("nav a[data-page=tools]")
            page.click("#tool-list li[data-tool=count]")
            expect(page.locator("#f-n")).to_be_visible()
            page.fill("#f-n", "9")
            page.click("#call-button")
            field_error = page.locator("#tool-form .field-error[data-error-for=n]")
            expect(field_error).to_contain_text("9")
            expect(page.locator("#f-n")).to_have_class("invalid")
            page.screenshot(path=str(shots / "03-tool-field-error.png"), full_page=True)
            ok(f"a wrong value is shown at its field: {field_error.inner_text()!r}")

            # A call with live progress and log messages.
            page.fill("#f-n", "2")
            page.click("#call-button")
            expect(page.locator("#call-status")).to_contain_text(re.compile(r"running….*\(\d.* / "))
            progress_text = page.locator("#call-status").inner_text()
            expect(page.locator("#call-status")).to_have_text("done", timeout=TIMEOUT_MS)
            expect(page.locator("#call-log")).to_contain_text("step 2")
            expect(page.locator("#call-result")).to_contain_text("step 1")
            page.screenshot(path=str(shots / "04-tool-result.png"), full_page=True)
            ok(f"a call showed progress ({progress_text!r}), its log lines and its result")

            # Copy as curl / as portcullis call.
            page.click("#copy-curl")
            expect(page.locator("#copied")).to_contain_text("curl -sS")
            expect(page.locator("#copied")).to_contain_text("\"name\":\"count\"")
            page.click("#copy-cli")
            expect(page.locator("#copied")).to_contain_text("portcullis call")
            expect(page.locator("#copied")).to_contain_text('{"n":2}')
            ok("copy as curl and as portcullis call")

            # Cancellation of a running call.
            page.fill("#f-n", "5")
            page.click("#call-button")
            expect(page.locator("#call-status")).to_contain_text(re.compile(r"running….*\(\d.* / "))
            page.click("#cancel-button")
            expect(page.locator("#call-status")).to_have_text("cancelled")
            page.screenshot(path=str(shots / "05-tool-cancelled.png"), full_page=True)
            ok("a running call was cancelled")

            # Resources: read, watch, see a live update after a file edit.
            page.click("nav a[data-page=resources]")
            page.click("#resource-list li[data-uri='note://meeting']")
            expect(page.locator("#resource-contents")).to_contain_text("first version")
            page.click("#watch-button")
            expect(page.locator("#watch-status")).to_contain_text("watching")
            time.sleep(1.0)
            (notes_dir / "meeting.md").write_text("# Meeting\n\nsecond version of the notes\n")
            expect(page.locator("#watch-status")).to_contain_text("updated", timeout=TIMEOUT_MS)
            expect(page.locator("#resource-contents")).to_contain_text("second version")
            page.screenshot(path=str(shots / "06-resource-live.png"), full_page=True)
            ok("a resource updated live after its file changed")

            # Prompts: completion-backed input and rendered messages.
            page.click("nav a[data-page=prompts]")
            page.click("#prompt-list li[data-prompt=greet]")
            page.fill("#p-name", "Ada")
            page.click("#get-prompt")
            expect(page.locator("#prompt-messages")).to_contain_text("Hello, Ada")
            page.screenshot(path=str(shots / "07-prompt.png"), full_page=True)
            ok("a prompt rendered its messages")

            # Approvals: the waiting call of another principal, approved here.
            page.click("nav a[data-page=approvals]")
            card = page.locator(".approval", has_text="approved.txt")
            expect(card).to_contain_text("key:alice")
            expect(card.locator(".digest")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
            page.screenshot(path=str(shots / "08-approvals.png"), full_page=True)
            card.locator("button.approve").click()
            expect(page.locator("#toast")).to_contain_text("approved")
            expect(page.locator(".approval", has_text="approved.txt")).to_have_count(0, timeout=TIMEOUT_MS)
            ok("a pending call was approved")

            # The audit tail shows the decision.
            page.click("nav a[data-page=audit]")
            page.select_option("#audit-decision", "approved")
            page.click("#audit-filter button")
            expect(page.locator("#audit-table tbody")).to_contain_text("approval/decision")
            expect(page.locator("#audit-table tbody")).to_contain_text("key:boss")
            page.screenshot(path=str(shots / "09-audit.png"), full_page=True)
            ok("the audit tail shows the approval")

            page.click("nav a[data-page=withheld]")
            expect(page.locator("#withheld-table tbody")).to_contain_text("nothing is withheld")
            page.screenshot(path=str(shots / "10-withheld.png"), full_page=True)
            ok("the withheld page")

            # Signing out leaves nothing of this principal's on any page.
            page.click("#sign-out")
            expect(page.locator("#page-signin")).to_be_visible()
            if page.locator("#audit-table tbody tr").count() or page.locator("#approval-list *").count():
                raise AssertionError("the audit tail or the approvals outlived the sign-out")
            expect(page.locator("#tool-detail")).to_have_text("Choose a tool.")
            ok("signing out empties every page")

            # No CSP violation by the console itself, no request elsewhere, no script error.
            violations = page.evaluate("window.__csp")
            if violations:
                raise AssertionError(f"the console violated its CSP: {violations}")
            if foreign:
                raise AssertionError(f"requests left the server: {foreign}")
            if errors:
                raise AssertionError(f"script errors: {errors}")
            ok("no CSP violation, no external request, no script error")
            # The policy holds: an inline handler injected into the page does not run.
            page.evaluate(
                "document.body.insertAdjacentHTML('beforeend', '<img src=\"/console/nothing.png\" onerror=\"window.__inline = 1\">')"
            )
            # (No wait_for_function: Playwright evaluates its text, which this CSP forbids.)
            for _ in range(100):
                if page.evaluate("window.__csp.length") > 0:
                    break
                time.sleep(0.05)
            ran = page.evaluate("window.__inline === 1")
            directives = [v["directive"] for v in page.evaluate("window.__csp")]
            if ran or not any(d.startswith("script-src") for d in directives):
                raise AssertionError(f"an inline handler ran or was not reported: ran={ran}, {directives}")
            ok(f"an injected inline handler was blocked ({directives})")
        finally:
            browser.close()
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except Exception as e:  # noqa: BLE001 - report anything
        print(f"FAIL {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        traceback.print_exception(e, file=sys.stderr)
        code = 1
    sys.exit(code)
