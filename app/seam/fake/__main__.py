"""``python -m app.seam.fake [--host] [--port] [--webhook-url] [--webhook-secret]
[--issue-delay] [--api-key]``."""

import argparse

from app.seam.fake.app import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app.seam.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None)
    parser.add_argument("--issue-delay", type=float, default=None)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    serve(
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        issue_delay=args.issue_delay,
        api_key=args.api_key,
    )


if __name__ == "__main__":
    main()
