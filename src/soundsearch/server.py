"""HTTP JSON API and the web page over one index (starlette + uvicorn, the ``serve`` extra).

Routes::

    GET /                          the web page (soundsearch/web/index.html, app.js, style.css)
    GET /api/search?q=&k=&mode=    ranked files for a text query            -> Response JSON
    GET /api/similar?id=&k=&mode=  files that sound like indexed file ``id`` -> Response JSON
    GET /api/status                counts, model, errors                     -> JSON
    GET /api/audio/{id}            the audio of indexed file ``id`` (HTTP Range supported)

Audio is served only for files in the index, looked up by id: no request can name a path. The
matrices and models are loaded once at start-up and reloaded when the index changes. Queries are
answered one at a time (they take milliseconds; the tokenizer is not thread-safe).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from soundsearch.config import FusionSettings
from soundsearch.errors import UserError
from soundsearch.index.search import Searcher
from soundsearch.index.store import Store

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from soundsearch.index.search import Response as SearchResponse

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
AUDIO_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".aif": "audio/aiff",
    ".aiff": "audio/aiff", ".aifc": "audio/aiff", ".au": "audio/basic", ".caf": "audio/x-caf",
}  # fmt: skip


def _starlette() -> None:
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise UserError(
            "the web server needs the 'serve' extra: pip install 'soundsearch[serve]'"
        ) from None


def create_app(
    index_dir: str | Path, fusion: FusionSettings | None = None, device: str = "cpu"
) -> Starlette:
    """The ASGI application for one index (models and matrices are loaded here)."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    store = Store(index_dir)
    searcher = Searcher(store, fusion, device=device)
    t0 = time.perf_counter()
    searcher.warm()
    log.info("index loaded in %.1f s", time.perf_counter() - t0)
    api = _Api(searcher)
    routes = [
        Route("/", api.page),
        Route("/api/search", api.search),
        Route("/api/similar", api.similar),
        Route("/api/status", api.status),
        Route("/api/audio/{file_id:int}", api.audio),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=_closing(store))
    app.state.searcher = searcher
    return app


def _closing(store: Store) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        store.close()

    return lifespan


class _Api:
    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        self.lock = threading.Lock()

    def page(self, request: Request) -> Response:
        from starlette.responses import FileResponse

        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        return self._answer(
            lambda k, mode: self.searcher.search(q, k=k, mode=mode or "hybrid"), request
        )

    def similar(self, request: Request) -> Response:
        target = request.query_params.get("id", "")
        if not target.isdigit():
            return _error(400, "give the id of an indexed file: /api/similar?id=N")
        return self._answer(
            lambda k, mode: self.searcher.similar(int(target), k=k, mode=mode), request
        )

    def _answer(
        self, call: Callable[[int, str | None], SearchResponse], request: Request
    ) -> Response:
        from starlette.responses import JSONResponse

        params = request.query_params
        try:
            k = int(params.get("k", "10"))
        except ValueError:
            return _error(400, f"k must be a whole number, not {params.get('k')!r}")
        try:
            with self.lock:
                response = call(k, params.get("mode") or None)
        except UserError as e:
            return _error(400, str(e))
        return JSONResponse(response.to_dict())

    def status(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        from soundsearch.commands.status import collect

        with self.lock:
            return JSONResponse(collect(self.searcher.store, limit=100))

    def audio(self, request: Request) -> Response:
        from starlette.responses import FileResponse

        fid = int(request.path_params["file_id"])
        with self.lock:
            row = self.searcher.store.files_by_id([fid]).get(fid)
        if row is None:
            return _error(404, f"no indexed file has id {fid}")
        path = Path(row["path"])
        if not path.is_file():
            return _error(410, f"{path} was indexed but is gone; run `soundsearch index` again")
        media = AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
        return FileResponse(path, media_type=media or "application/octet-stream")


def _error(status: int, message: str) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def start_in_thread(
    app: Starlette, host: str = "127.0.0.1", port: int = 0
) -> tuple[uvicorn.Server, str]:
    """Serve ``app`` from a background thread (tests, notebooks). Returns (server, url); stop
    with ``server.should_exit = True``."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="soundsearch-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    server.thread = thread  # type: ignore[attr-defined]
    return server, f"http://{host}:{bound}"
