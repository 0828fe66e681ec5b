"""Webhook verification and parsing, with deliveries shaped like the forges' own."""

from __future__ import annotations

import json

import pytest

from service_feature.forges.base import ForgeKind
from service_feature.forges.webhooks import (
    IssueTrigger,
    ReviewCommentTrigger,
    WebhookConfig,
    WebhookRejected,
    receive,
)
from tests.support import forges_webhooks as payloads
from tests.support.forges_webhooks import delivery

SECRET = "webhook-secret-7d1e"
CONFIG = WebhookConfig(secret=SECRET, label="service-feature", handle="feature-bot")

LABELLED = {
    ForgeKind.github: ("issues", payloads.github_issue_labeled()),
    ForgeKind.gitlab: ("Issue Hook", payloads.gitlab_issue_hook()),
    ForgeKind.gitea: ("issues", payloads.gitea_issue_label_updated(added=["service-feature"])),
}


# ---------------------------------------------------------------------------------------------- issues


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_a_labelled_issue_is_a_trigger(kind: ForgeKind) -> None:
    event, payload = LABELLED[kind]
    headers, body = delivery(kind, event, payload, SECRET, delivery_id="d-1")

    trigger = receive(kind, headers, body, CONFIG)

    assert isinstance(trigger, IssueTrigger)
    assert trigger.forge is kind
    assert trigger.delivery_id == "d-1"
    assert trigger.action == "labeled"
    assert trigger.title == "Greet people by name"
    assert trigger.body == "Add a greet(name) function."
    assert trigger.author == "grace"
    assert "service-feature" in trigger.labels
    assert trigger.default_branch == "main"
    expected_path = "acme/platform/app" if kind is ForgeKind.gitlab else "acme/app"
    assert trigger.repository == expected_path
    assert trigger.clone_url.endswith(f"/{expected_path}.git")


def test_github_issue_opened_with_the_label() -> None:
    headers, body = delivery(
        ForgeKind.github, "issues", payloads.github_issue_labeled(action="opened"), SECRET
    )
    trigger = receive(ForgeKind.github, headers, body, CONFIG)
    assert isinstance(trigger, IssueTrigger)
    assert (trigger.action, trigger.number) == ("opened", 42)


def test_gitlab_issue_opened_with_the_label() -> None:
    headers, body = delivery(
        ForgeKind.gitlab, "Issue Hook", payloads.gitlab_issue_hook(action="open"), SECRET
    )
    trigger = receive(ForgeKind.gitlab, headers, body, CONFIG)
    assert isinstance(trigger, IssueTrigger)
    assert (trigger.action, trigger.number) == ("opened", 23)


def test_gitea_label_update_without_changes_uses_the_issue_labels() -> None:
    headers, body = delivery(ForgeKind.gitea, "issues", payloads.gitea_issue_label_updated(), SECRET)
    trigger = receive(ForgeKind.gitea, headers, body, CONFIG)
    assert isinstance(trigger, IssueTrigger)
    assert trigger.number == 5


@pytest.mark.parametrize(
    ("kind", "event", "payload"),
    [
        (ForgeKind.github, "issues", payloads.github_issue_labeled("bug")),
        (ForgeKind.gitlab, "Issue Hook", payloads.gitlab_issue_hook(current=["bug"])),
        # the label was there before: another label changed
        (
            ForgeKind.gitlab,
            "Issue Hook",
            payloads.gitlab_issue_hook(previous=["service-feature"], current=["service-feature", "bug"]),
        ),
        (ForgeKind.gitea, "issues", payloads.gitea_issue_label_updated(["bug"])),
        (
            ForgeKind.gitea,
            "issues",
            payloads.gitea_issue_label_updated(["service-feature", "bug"], added=["bug"]),
        ),
        (ForgeKind.github, "issues", payloads.github_issue_labeled(action="closed")),
    ],
)
def test_another_label_or_action_is_ignored(kind: ForgeKind, event: str, payload: dict[str, object]) -> None:
    headers, body = delivery(kind, event, payload, SECRET)
    assert receive(kind, headers, body, CONFIG) is None


# ---------------------------------------------------------------------------------------------- mentions

MENTION = "Could you take this one, @feature-bot? Thanks."
ISSUE_COMMENTS = {
    ForgeKind.github: ("issue_comment", payloads.github_issue_comment),
    ForgeKind.gitlab: ("Note Hook", payloads.gitlab_note_on_issue),
    ForgeKind.gitea: ("issue_comment", payloads.gitea_issue_comment),
}


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_a_mention_on_an_issue_is_a_trigger(kind: ForgeKind) -> None:
    event, build = ISSUE_COMMENTS[kind]
    headers, body = delivery(kind, event, build(MENTION), SECRET)

    trigger = receive(kind, headers, body, CONFIG)

    assert isinstance(trigger, IssueTrigger)
    assert trigger.action == "mentioned"
    assert trigger.comment == MENTION
    assert trigger.comment_id
    assert trigger.author == "grace"
    assert trigger.title == "Greet people by name"


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
@pytest.mark.parametrize(
    "text",
    [
        "no mention here",
        "mail feature-bot@example.com",  # not a mention
        "@feature-bot-two is another account",
        "see https://example.com/@feature-bot",
    ],
)
def test_a_comment_without_the_mention_is_ignored(kind: ForgeKind, text: str) -> None:
    event, build = ISSUE_COMMENTS[kind]
    headers, body = delivery(kind, event, build(text), SECRET)
    assert receive(kind, headers, body, CONFIG) is None


def test_the_platforms_own_comment_is_not_a_trigger() -> None:
    payload = payloads.github_issue_comment("> @feature-bot said…", author="feature-bot")
    headers, body = delivery(ForgeKind.github, "issue_comment", payload, SECRET)
    assert receive(ForgeKind.github, headers, body, CONFIG) is None


def test_a_github_comment_on_a_pull_requests_conversation_is_ignored() -> None:
    payload = payloads.github_issue_comment(MENTION, on_pull_request=True)
    headers, body = delivery(ForgeKind.github, "issue_comment", payload, SECRET)
    assert receive(ForgeKind.github, headers, body, CONFIG) is None


# ------------------------------------------------------------------------------------------ review comments


def test_github_review_comment() -> None:
    headers, body = delivery(
        ForgeKind.github, "pull_request_review_comment", payloads.github_review_comment(MENTION), SECRET
    )

    trigger = receive(ForgeKind.github, headers, body, CONFIG)

    assert trigger == ReviewCommentTrigger(
        forge=ForgeKind.github,
        delivery_id=headers["X-GitHub-Delivery"],
        repository="acme/app",
        clone_url="https://github.com/acme/app.git",
        number=7,
        head="feature/greeting",
        base="main",
        thread_id="2002",
        body=MENTION,
        author="grace",
        path="src/greeting.py",
        line=3,
        diff_hunk=payloads.github_review_comment(MENTION)["comment"]["diff_hunk"],
    )


def test_a_github_reply_answers_the_threads_first_comment() -> None:
    payload = payloads.github_review_comment(MENTION, in_reply_to=1999)
    headers, body = delivery(ForgeKind.github, "pull_request_review_comment", payload, SECRET)
    trigger = receive(ForgeKind.github, headers, body, CONFIG)
    assert isinstance(trigger, ReviewCommentTrigger)
    assert trigger.thread_id == "1999"


def test_gitlab_note_on_a_merge_request() -> None:
    headers, body = delivery(
        ForgeKind.gitlab, "Note Hook", payloads.gitlab_note_on_merge_request(MENTION), SECRET
    )

    trigger = receive(ForgeKind.gitlab, headers, body, CONFIG)

    assert isinstance(trigger, ReviewCommentTrigger)
    assert (trigger.number, trigger.head, trigger.base) == (7, "feature/greeting", "main")
    assert trigger.thread_id == "0b6f3e9f4c2a1d8e7b5a6c4d3e2f1a0b9c8d7e6f"
    assert (trigger.path, trigger.line) == ("src/greeting.py", 3)
    assert trigger.repository == "acme/platform/app"


def test_an_edited_gitlab_note_is_ignored() -> None:
    payload = payloads.gitlab_note_on_merge_request(MENTION, action="update")
    headers, body = delivery(ForgeKind.gitlab, "Note Hook", payload, SECRET)
    assert receive(ForgeKind.gitlab, headers, body, CONFIG) is None


def test_gitea_comment_on_a_pull_request() -> None:
    payload = payloads.gitea_issue_comment(MENTION, on_pull_request=True)
    headers, body = delivery(ForgeKind.gitea, "issue_comment", payload, SECRET)

    trigger = receive(ForgeKind.gitea, headers, body, CONFIG)

    assert isinstance(trigger, ReviewCommentTrigger)
    assert (trigger.number, trigger.head, trigger.base, trigger.thread_id) == (
        7,
        "feature/greeting",
        "main",
        "77",
    )


def test_gitea_review_summary_mentioning_the_handle() -> None:
    headers, body = delivery(ForgeKind.gitea, "pull_request_comment", payloads.gitea_review(MENTION), SECRET)

    trigger = receive(ForgeKind.gitea, headers, body, CONFIG)

    assert isinstance(trigger, ReviewCommentTrigger)
    assert trigger.thread_id is None
    assert trigger.body == MENTION


def test_forgejo_headers_are_accepted() -> None:
    headers, body = delivery(ForgeKind.gitea, "issues", LABELLED[ForgeKind.gitea][1], SECRET)
    forgejo = {
        "X-Forgejo-Event": "issues",
        "X-Forgejo-Delivery": "f-1",
        "X-Forgejo-Signature": headers["X-Gitea-Signature"],
    }
    trigger = receive(ForgeKind.gitea, forgejo, body, CONFIG)
    assert isinstance(trigger, IssueTrigger)
    assert trigger.delivery_id == "f-1"


def test_gitlab_prefers_the_idempotency_key() -> None:
    headers, body = delivery(ForgeKind.gitlab, *LABELLED[ForgeKind.gitlab], SECRET)
    headers["Idempotency-Key"] = "stable-across-retries"
    trigger = receive(ForgeKind.gitlab, headers, body, CONFIG)
    assert trigger is not None
    assert trigger.delivery_id == "stable-across-retries"


# ---------------------------------------------------------------------------------------------- rejections

SIGNATURE_HEADERS = {
    ForgeKind.github: "X-Hub-Signature-256",
    ForgeKind.gitlab: "X-Gitlab-Token",
    ForgeKind.gitea: "X-Gitea-Signature",
}


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_a_wrong_secret_is_rejected(kind: ForgeKind) -> None:
    headers, body = delivery(kind, *LABELLED[kind], "not-the-secret")
    with pytest.raises(WebhookRejected) as caught:
        receive(kind, headers, body, CONFIG)
    assert caught.value.status_code == 401
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_a_missing_signature_is_rejected(kind: ForgeKind) -> None:
    headers, body = delivery(kind, *LABELLED[kind], SECRET)
    del headers[SIGNATURE_HEADERS[kind]]
    with pytest.raises(WebhookRejected) as caught:
        receive(kind, headers, body, CONFIG)
    assert caught.value.status_code == 401


@pytest.mark.parametrize("kind", [ForgeKind.github, ForgeKind.gitea], ids=str)
def test_a_signature_over_another_body_is_rejected(kind: ForgeKind) -> None:
    headers, body = delivery(kind, *LABELLED[kind], SECRET)
    tampered = body.replace(b"Greet people by name", b"Delete everything!!!")
    with pytest.raises(WebhookRejected) as caught:
        receive(kind, headers, tampered, CONFIG)
    assert caught.value.status_code == 401


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_an_oversized_body_is_rejected_before_anything_else(kind: ForgeKind) -> None:
    event, payload = LABELLED[kind]
    payload = {**payload, "padding": "x" * 2048}
    headers, body = delivery(kind, event, payload, SECRET)
    with pytest.raises(WebhookRejected) as caught:
        receive(
            kind, headers, body, WebhookConfig(SECRET, "service-feature", "feature-bot", max_body_bytes=1024)
        )
    assert caught.value.status_code == 413


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_malformed_json_is_rejected(kind: ForgeKind) -> None:
    event = LABELLED[kind][0]
    headers, body = delivery(kind, event, {}, SECRET)
    body = b'{"action": "labeled", '
    headers.update(payloads.sign(kind, body, SECRET))
    with pytest.raises(WebhookRejected) as caught:
        receive(kind, headers, body, CONFIG)
    assert caught.value.status_code == 400


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
def test_a_payload_of_the_wrong_shape_is_rejected(kind: ForgeKind) -> None:
    headers, body = delivery(kind, LABELLED[kind][0], {"action": "labeled", "issue": "nope"}, SECRET)
    with pytest.raises(WebhookRejected) as caught:
        receive(kind, headers, body, CONFIG)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        (ForgeKind.github, "push"),
        (ForgeKind.github, "ping"),
        (ForgeKind.gitlab, "Push Hook"),
        (ForgeKind.gitea, "push"),
    ],
)
def test_an_unsupported_event_is_accepted_and_ignored(kind: ForgeKind, event: str) -> None:
    headers, body = delivery(kind, event, {"zen": "Keep it logically awesome."}, SECRET)
    assert receive(kind, headers, body, CONFIG) is None


def test_an_unsupported_event_still_needs_the_signature() -> None:
    headers, body = delivery(ForgeKind.github, "push", {"ref": "refs/heads/main"}, "wrong")
    with pytest.raises(WebhookRejected):
        receive(ForgeKind.github, headers, body, CONFIG)


def test_a_missing_event_header_is_rejected() -> None:
    headers, body = delivery(ForgeKind.github, *LABELLED[ForgeKind.github], SECRET)
    del headers["X-GitHub-Event"]
    with pytest.raises(WebhookRejected) as caught:
        receive(ForgeKind.github, headers, body, CONFIG)
    assert caught.value.status_code == 400


def test_an_empty_secret_refuses_everything() -> None:
    headers, body = delivery(ForgeKind.gitlab, *LABELLED[ForgeKind.gitlab], "")
    with pytest.raises(WebhookRejected) as caught:
        receive(ForgeKind.gitlab, headers, body, WebhookConfig("", "service-feature", "feature-bot"))
    assert caught.value.status_code == 401


def test_the_secret_is_not_in_the_configs_repr() -> None:
    assert SECRET not in repr(CONFIG)


def test_header_names_are_case_insensitive() -> None:
    headers, body = delivery(ForgeKind.github, *LABELLED[ForgeKind.github], SECRET)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert receive(ForgeKind.github, lowered, body, CONFIG) is not None
    assert json.loads(body)["action"] == "labeled"
