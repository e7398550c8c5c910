"""The bare baselines: FastAPI endpoints that decode the uploaded PNG and re-encode it, no model.

``python -m bench.bare --port 8100 --workers 1``. Both do the same image work as a denoise request
(multipart parse, Pillow decode, PNG encode at the service's compression level), so the ratio
service/bare is the cost of the model, the batching and the service's own machinery:

- ``/upload``: the ordinary FastAPI way, ``async def`` with an ``UploadFile`` parameter;
- ``/echo``: ``async def`` reading ``request.form()`` itself (no parameter resolution).
"""

from __future__ import annotations

import argparse
import io

import uvicorn
from fastapi import FastAPI, Request, Response, UploadFile
from PIL import Image

COMPRESS_LEVEL = 1  # the service's default AESERVE_PNG_COMPRESS_LEVEL


def _echo(data: bytes) -> Response:
    img = Image.open(io.BytesIO(data))
    img.load()
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=COMPRESS_LEVEL)
    return Response(out.getvalue(), media_type="image/png")


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/upload")
    async def upload(image: UploadFile) -> Response:
        return _echo(await image.read())

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        form = await request.form()
        upload = form["image"]
        assert not isinstance(upload, str)
        data = await upload.read()
        await form.close()
        return _echo(data)

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
