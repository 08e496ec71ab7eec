"""The HTTP face of hotline-scanner: JSON API, web UI, Prometheus metrics and health."""

from api.app import create_app, serve

__all__ = ["create_app", "serve"]
