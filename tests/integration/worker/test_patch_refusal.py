"""The worker refuses, before commit, a patch that writes through a symlink or into .git/."""

import os
import subprocess
from pathlib import Path

from service_feature.git import Git
from service_feature.worker.service import refuse_unsafe


def _commit(work: Path, message: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", message], check=True, env=env)


async def test_writes_through_a_base_symlink_and_into_git_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "app.py").write_text("x = 1\n")
    os.symlink("/etc", work / "etc-link")
    _commit(work, "base")
    base = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    git = Git(tmp_path / "ws", allow_local=True)
    assert await git.symlinks(work, base) == ["etc-link"]

    through_link = (
        "diff --git a/etc-link/cron.d/evil b/etc-link/cron.d/evil\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/etc-link/cron.d/evil\n@@ -0,0 +1 @@\n+* * * * * root sh\n"
    )
    into_git = (
        "diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\nnew file mode 100755\n"
        "--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+evil\n"
    )
    clean = "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    refusal = await refuse_unsafe(git, work, base, through_link)
    assert refusal is not None
    assert refusal.startswith("patch refused: ")
    assert "etc-link" in refusal
    refusal = await refuse_unsafe(git, work, base, into_git)
    assert refusal is not None
    assert ".git" in refusal
    assert await refuse_unsafe(git, work, base, clean) is None
