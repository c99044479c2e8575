"""A local S3-compatible server (moto in server mode: real HTTP on a loopback port), reached by the real s3fs
client through the standard AWS environment variables, as a deployment would give them."""

from __future__ import annotations

from tests.loopback import free_port

# The secret key planted in the environment: a test greps tables, logs and output for it.
PLANTED_SECRET_KEY = "sk-planted-s3-5ecret-77aa"
ACCESS_KEY = "AKIDSELFMODELTEST"


class S3Server:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3Server":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def environment(self) -> dict[str, str]:
        """What a deployment sets for s3fs (botocore reads every one of these)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": PLANTED_SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}

    def reset(self) -> None:
        """Every bucket gone (moto's reset endpoint), so each test starts empty."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()
