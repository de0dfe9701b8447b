"""gunicorn's settings for the portal's processes under `podium up`
(`gunicorn -c python:portal.gunicorn_config`).

The app is loaded once, in the master, before the workers fork (`preload_app`): the
code and data every worker imports is then shared between them, not held once each.
gevent patches the standard library here, before the app imports it, as its workers
would have done after the fork. Nothing the app opened in the master crosses a fork:
SQLAlchemy's pools are disposed of in each new worker (redis-py's pools see the new
process by themselves).
"""

import gc

from gevent import monkey

monkey.patch_all()
# The master's objects stay where they are: no collection frees holes among them before
# the fork, and `gc.freeze` keeps the workers' collections from writing to them (which
# would copy every page a worker shares with the master).
gc.disable()

preload_app = True
worker_class = "gevent"
# How long an idle kept-alive connection stays open. gunicorn's default (2 s) closes it
# while clients that pause for a second or two (people reading a page, agents beating
# every 2 s) send their next request on it, which then meets a reset; an idle
# connection costs a gevent worker a socket, not a thread.
keepalive = 75
# On stop, what is under way gets this long; open kept-alive and live connections are
# then closed (they would otherwise hold the stop for gunicorn's 30 s).
graceful_timeout = 5


def pre_fork(server, worker) -> None:  # gunicorn names both
    gc.freeze()


def post_fork(server, worker) -> None:  # gunicorn names both
    from portal.extensions import db

    gc.enable()
    app = server.app.wsgi()
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)
