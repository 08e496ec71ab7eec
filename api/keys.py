"""Typed keys of what the application and each request hold."""

from __future__ import annotations

import redis
from aiohttp import web

from hotline.config import Settings
from store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
REDIS = web.AppKey("redis", redis.Redis)
WHO = web.RequestKey("who", dict)  # the caller, as auth.identify() found them
