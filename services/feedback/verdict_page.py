"""The page a customer judges a resolution on: plain HTML, a form that works without JavaScript."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

from services.feedback.schemas import FeedbackStatus, VerdictLink
from shared.errors import Problem

# The token is in the address: never send it on as a referrer, never keep the page in a cache.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}

_STYLE = """
body { font: 1.1rem/1.5 system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
fieldset { border: 1px solid #767676; margin: 0 0 1.2rem; padding: .6rem 1rem; }
legend { font-weight: 600; padding: 0 .3rem; }
label { display: block; padding: .25rem 0; }
textarea { width: 100%; font: inherit; }
button { font: inherit; padding: .5rem 1.4rem; background: #0b57d0; color: #fff; border: 0; border-radius: 4px; }
button:focus, input:focus, textarea:focus { outline: 3px solid #f9a825; outline-offset: 2px; }
"""
FAIRNESS = {1: "1 — very unfair", 2: "2 — unfair", 3: "3 — neither", 4: "4 — fair", 5: "5 — very fair"}


def _page(title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def form(link: VerdictLink, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    """The question, as a form posted back to the same address."""
    kind = link.kind.value.replace("_", " ")
    resolved = f"{link.resolved_at.day} {link.resolved_at:%B %Y}"
    expires = f"{link.expires_at.day} {link.expires_at:%B %Y, %H:%M} UTC"
    alert = f'<p role="alert"><strong>{escape(error)}</strong></p>\n' if error else ""
    fairness = "\n".join(
        f'<label><input type="radio" name="fairness" value="{value}"> {escape(text)}</label>'
        for value, text in FAIRNESS.items()
    )
    body = f"""{alert}<p>We marked your {escape(kind)} as resolved on {escape(resolved)}.
Please tell us whether it was resolved, and whether that was fair to you.
This link works once, until {escape(expires)}.</p>
<form method="post">
<fieldset>
<legend>Was your problem resolved to your satisfaction?</legend>
<label><input type="radio" name="accepted" value="true" required> Yes, it was resolved</label>
<label><input type="radio" name="accepted" value="false"> No, it was not resolved</label>
</fieldset>
<fieldset>
<legend>How fair was the way we resolved it? (optional)</legend>
{fairness}
</fieldset>
<label for="comment">Anything you want to tell us (optional)</label>
<textarea id="comment" name="comment" rows="4" maxlength="2000"></textarea>
<p><button type="submit">Send my answer</button></p>
</form>"""
    return _page("Was your problem resolved fairly?", body, status_code=status_code)


def thanks(status: FeedbackStatus) -> HTMLResponse:
    if status is FeedbackStatus.CLOSED:
        text = "Thank you. We are glad it was resolved, and have closed it."
    else:
        text = "Thank you for telling us. We have reopened it, and our support team and management will look again."
    return _page("Thank you for your answer", f"<p>{escape(text)}</p>")


def problem(problem: Problem) -> HTMLResponse:
    """A refused link or answer, said plainly, with the problem's own status."""
    titles = {
        404: "This link is not valid",
        409: "This question was already answered",
        410: "This link has expired",
        422: "Your answer could not be read",
    }
    title = titles.get(problem.status, "Your answer could not be recorded")
    return _page(title, f"<p>{escape(problem.detail)}</p>", status_code=problem.status)
