"""The bare baseline: a FastAPI endpoint that decodes the uploaded PNG and re-encodes it, no model.

``python -m bench.bare --port 8100 --workers 1``. It does the same image work as a denoise request
(multipart parse, Pillow decode, PNG encode at the service's compression level), so the ratio
service/bare is the cost of the model, the batching and the service's own machinery.
"""

from __future__ import annotations

import argparse
import io

import uvicorn
from fastapi import FastAPI, Request, Response
from PIL import Image

COMPRESS_LEVEL = 1  # the service's default AESERVE_PNG_COMPRESS_LEVEL


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        form = await request.form()
        upload = form["image"]
        assert not isinstance(upload, str)
        data = await upload.read()
        await form.close()
        img = Image.open(io.BytesIO(data))
        img.load()
        out = io.BytesIO()
        img.save(out, format="PNG", compress_level=COMPRESS_LEVEL)
        return Response(out.getvalue(), media_type="image/png")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run("bench.bare:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")


if __name__ == "__main__":
    main()
