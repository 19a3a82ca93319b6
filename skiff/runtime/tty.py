"""A pty for a foreground `run`/`exec -t` without --console-socket: as runc,
the runtime itself receives the pty master over a socket pair and copies
between its own stdio and the container's terminal."""

import os
import select
import socket


class ConsoleProxy:
    def __init__(self):
        self.sock, self.child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.master = None
        self.saved = None
        self.stdin_open = True

    def receive_master(self):
        self.child_sock.close()
        _, fds, _, _ = socket.recv_fds(self.sock, 4096, 1)
        self.sock.close()
        if not fds:
            raise OSError("no pty master received from the container")
        self.master = fds[0]

    def resize(self):
        import fcntl
        import termios
        try:
            ws = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, ws)
        except OSError:
            pass

    def start_copy(self):
        if os.isatty(0):
            import termios
            import tty
            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
            self.resize()

    def pump(self, timeout=0.05):
        fds = [self.master] + ([0] if self.stdin_open else [])
        try:
            r, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if self.master in r:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if data:
                os.write(1, data)
        if 0 in r:
            data = os.read(0, 65536)
            if data:
                os.write(self.master, data)
            else:
                self.stdin_open = False
                os.write(self.master, b"\x04")  # EOF for the terminal's reader

    def drain(self):
        while True:
            r, _, _ = select.select([self.master], [], [], 0)
            if not r:
                return
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            os.write(1, data)

    def close(self):
        if self.saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
        if self.master is not None:
            os.close(self.master)
