"""demo-app: small utilities."""
