"""Forges (GitHub, GitLab, Gitea/Forgejo): pull requests opened where teams review code, and the webhooks
that bring issues and review comments in. `base` is the one interface the worker and the gateway use."""
