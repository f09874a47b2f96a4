"""Where a study lives: the default Optuna storage URL, its password-free form, creating the study."""

from __future__ import annotations

import os
import time
from urllib.parse import urlparse, urlunparse

import optuna
import sqlalchemy.exc

from aetrack.errors import one_line
from aetrack.sweep.result import SweepError

CREATE_ATTEMPTS = 3


def default_storage(tracking_uri: str) -> str:
    """An SQLite file `optuna.db` beside a local MLflow store; in the working directory otherwise."""
    parsed = urlparse(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        directory = os.path.dirname(os.path.abspath(tracking_uri[len("sqlite:///"):].split("?")[0]))
    elif parsed.scheme in ("", "file"):
        directory = os.path.abspath(parsed.path if parsed.scheme == "file" else tracking_uri)
    else:
        directory = os.getcwd()
    return "sqlite:///" + os.path.join(directory, "optuna.db")


def redacted(url: str) -> str:
    """The storage URL without its password, for params and messages."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urlunparse(parsed._replace(netloc=netloc))


def create_study(storage: str, study_name: str, direction: str) -> None:
    """Create the study unless it exists; a storage that cannot be used is one clear line."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            optuna.create_study(storage=storage, study_name=study_name, direction=direction, load_if_exists=True)
            return
        except (ImportError, ValueError, sqlalchemy.exc.ArgumentError) as exc:  # not a URL Optuna can use
            raise SweepError(f"invalid --storage {redacted(storage)!r}: {one_line(exc)[:300]}; expected an Optuna "
                             "RDB URL such as sqlite:///optuna.db or postgresql://user:password@host/db") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's many errors; two workers creating a new file race
            if attempt == CREATE_ATTEMPTS - 1:
                raise SweepError(f"invalid --storage {redacted(storage)!r}: cannot open it: {one_line(exc)[:300]}") from None
            time.sleep(1.0 + attempt)
