"""`python -m app serve|reconcile`."""

from __future__ import annotations

import argparse
import sys

from app.config import ConfigurationError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "serve":
        import uvicorn

        from app.main import create_app

        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            access_log=False,
            proxy_headers=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
