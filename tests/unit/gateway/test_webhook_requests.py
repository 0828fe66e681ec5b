"""Webhook triggers to feature requests: pure mapping, ids that make a redelivery a duplicate."""

from service_feature.forges.base import ForgeKind
from service_feature.forges.webhooks import IssueTrigger, ReviewCommentTrigger
from service_feature.gateway.webhooks import feature_request_of, trigger_id
from service_feature.models import DeliveryMode, Language

ISSUE = IssueTrigger(
    forge=ForgeKind.github,
    delivery_id="d-1",
    repository="acme/app",
    clone_url="https://github.com/acme/app.git",
    default_branch="trunk",
    number=42,
    title="Greet\npeople\x07 by name " + "x" * 300,
    body="Add greet().\x00",
    author="grace",
    labels=("service-feature", "language:go"),
    action="labeled",
)
REVIEW = ReviewCommentTrigger(
    forge=ForgeKind.gitlab,
    delivery_id="d-2",
    repository="acme/app",
    clone_url="https://gitlab.com/acme/app.git",
    number=7,
    head="feature/abc",
    base="main",
    thread_id="0b6f3e9f",
    body="@service-feature rename this\nplease",
    author="ada",
    path="src/app.py",
    line=3,
    diff_hunk="@@ -1 +1 @@\n-a\n+b",
)


def test_an_issue_becomes_a_pull_request_feature_on_the_default_branch() -> None:
    request = feature_request_of(ISSUE, Language.python)
    assert request.branch == "trunk"
    assert request.delivery is DeliveryMode.pull_request
    assert request.follow_up is None
    assert request.specification.language is Language.go  # the issue's language: label wins
    assert request.specification.title.startswith("Greet people by name x")
    assert len(request.specification.title) == 200
    assert "\x00" not in request.specification.description
    assert "(From issue #42 of acme/app.)" in request.specification.description


def test_a_review_comment_becomes_a_follow_up_on_the_pull_requests_branch() -> None:
    request = feature_request_of(REVIEW, Language.rust)
    assert request.branch == "feature/abc"
    assert request.follow_up is not None
    assert (request.follow_up.pull_request, request.follow_up.thread_id) == (7, "0b6f3e9f")
    assert request.specification.language is Language.rust
    assert request.specification.title == "Review on #7: @service-feature rename this"
    description = request.specification.description
    assert "commented on src/app.py line 3 on pull request #7" in description
    assert "```diff\n@@ -1 +1 @@\n-a\n+b\n```" in description


def test_ids_name_what_asked_so_repeats_are_duplicates() -> None:
    relabelled = IssueTrigger(**{**ISSUE.__dict__, "delivery_id": "d-9", "action": "labeled"})
    assert trigger_id(relabelled) == trigger_id(ISSUE)  # one feature per issue
    asked_in_comment = IssueTrigger(**{**ISSUE.__dict__, "comment": "do it", "comment_id": "5"})
    assert trigger_id(asked_in_comment) != trigger_id(ISSUE)
    again = ReviewCommentTrigger(**{**REVIEW.__dict__, "delivery_id": "d-3"})
    assert trigger_id(again) != trigger_id(REVIEW)  # another comment delivery, another follow-up
    assert trigger_id(ISSUE).startswith("github-")
