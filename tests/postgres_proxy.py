"""A TCP proxy between the service and Postgres that a test takes down, or makes answer
as a stopping or restarting Postgres does, and brings back."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from tests.processes import free_port

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def postgres_error(sqlstate: str, message: str) -> bytes:
    """A FATAL ErrorResponse of Postgres's wire protocol."""
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class PostgresProxy:
    """Between the service and Postgres: `up`, `down`, or answering like a stopping server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "up"
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def set_mode(self, mode: str) -> None:
        """`up`; `down`: cut every connection and refuse new ones (Postgres stopped);
        `shutting_down`: cut, then answer each new one FATAL 57P03 (Postgres stopping);
        `restarting`: cut, then close each new one during its startup (Postgres restarting).
        """
        self.mode = mode
        if mode != "up":
            self._cut()
        if mode == "down" and self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        elif mode != "down" and self.server is None:
            await self.start()

    async def close(self) -> None:
        await self.set_mode("down")
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _cut(self) -> None:
        for writer in list(self.connections):
            writer.close()
        self.connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            if self.mode == "up":
                await self._pipe(reader, writer)
            else:
                await self._refuse(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # SSLRequest / GSSENCRequest come first; decline them, then the startup
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            packet = await reader.readexactly(length - 4)
            code = struct.unpack("!I", packet[:4])[0]
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            if self.mode == "restarting":
                return
            writer.write(postgres_error("57P03", "the database system is shutting down"))
            await writer.drain()
            return

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        if self.mode != "up":  # the outage began while this connection was being opened
            upstream_writer.close()
            return
        self.connections |= {writer, upstream_writer}

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        try:
            await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))
        finally:
            self.connections -= {writer, upstream_writer}
