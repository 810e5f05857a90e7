"""One model served by several OpenAI-compatible servers (`more_urls`), each pulling work.

Kept apart from the HTTP client (openai_http.py) because it knows nothing of HTTP: it spreads
requests over any backends of the same model and hands a failed one's work to the others.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from localdistill.backends.base import Backend, BackendError, Request, Result


class SpreadBackend:
    """One model served by several servers (`url` and `more_urls`): each server pulls the next
    request whenever it has a free slot, so a faster server takes more. A server that fails for
    good hands the requests it held back to the others; the error reaches the caller only when no
    server is left to answer them."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        source, lock = iter(requests), threading.Lock()
        returned: queue.Queue[Request] = queue.Queue()  # held by a server that failed
        results: queue.Queue[tuple[str, int, object]] = queue.Queue()
        held: list[dict[int, Request]] = [{} for _ in self.backends]

        def feed(index: int) -> Iterator[Request]:
            while True:
                try:
                    request = returned.get_nowait()
                except queue.Empty:
                    with lock:
                        request = next(source, None)
                    if request is None:
                        return
                held[index][id(request)] = request
                yield request

        def serve(index: int) -> None:
            try:
                for result in self.backends[index].generate(feed(index)):
                    results.put(("result", index, result))
            except BackendError as e:
                results.put(("failed", index, e))
            except BaseException as e:  # noqa: BLE001 - carried to the caller's thread
                results.put(("crashed", index, e))
            else:
                results.put(("finished", index, None))

        def start(index: int) -> None:
            threading.Thread(target=serve, args=(index,), daemon=True,
                             name=f"spread-{index}").start()

        live = set(range(len(self.backends)))
        running = set(live)
        for index in running:
            start(index)
        error: BackendError | None = None
        while running:
            kind, index, value = results.get()
            if kind == "result":
                held[index].pop(id(value.request), None)
                yield value
                continue
            running.discard(index)
            if kind == "crashed":
                raise value
            if kind == "failed":
                live.discard(index)
                error = value
                for request in held[index].values():
                    returned.put(request)
                held[index].clear()
            if not running and not returned.empty():  # work handed back, nobody pulling
                running = set(live)
                for other in running:
                    start(other)
        if not returned.empty() and error is not None:
            raise error

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
