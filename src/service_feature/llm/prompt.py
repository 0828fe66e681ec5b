"""Untrusted text in a prompt: fenced between tags the model is told to treat as data.

Feature requests, repository files, test output and patches are written by other people (or by another
model) and may hold instructions. Fencing them lowers the odds that a model follows those instructions; it
does not prevent it, which is why the sandbox, the reviewer's scanners and the approval gate never rely on it.
The agent and the reviewer's model read a feature request in the same words (`specification_text`).
"""

from __future__ import annotations

import re

from service_feature.models import Specification


def fence(tag: str, text: str) -> str:
    """`text` between <tag> and </tag>; a closing tag inside it is defused so it cannot end the fence."""
    defused = re.sub(rf"</(\s*{tag})", r"<\\/\1", text, flags=re.IGNORECASE)
    return f"<{tag}>\n{defused}\n</{tag}>"


def specification_text(specification: Specification) -> str:
    """The feature request as a model reads it (to be fenced: every field is the submitter's text)."""
    requirements = "\n".join(f"- {item}" for item in specification.requirements) or "- (none given)"
    targets = "\n".join(f"- {item}" for item in specification.target_files) or "- (not specified)"
    return (
        f"Title: {specification.title}\nLanguage: {specification.language.value}\n"
        f"Description:\n{specification.description}\n"
        f"Requirements:\n{requirements}\nTarget files:\n{targets}"
    )
