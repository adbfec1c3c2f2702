"""Confirmable CoAP request client with RFC 7252 retransmission (section 4.2).

The socket is passed in (a UDP socket or anything with settimeout/sendto/recvfrom).
A request is sent as CON; the answer is accepted piggybacked in the ACK, or as a
separate CON/NON response with the request's token after an empty ACK (a CON
response is ACKed). Datagrams that match neither the message id nor the token are
ignored; an unexpected CON is answered with RST.
"""

import errno
import random
import time

from micropython import const

from replenish import coap

ACK_TIMEOUT_MS = const(2000)
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = const(4)
_TOKEN_BYTES = const(4)
_MAX_DATAGRAM = const(1152)
_SEPARATE_FACTOR = const(15)  # wait for a separate response: 15 x ACK_TIMEOUT (30 s)
# Longest single socket wait: a whole exchange (up to ~93 s of retransmission, then
# 30 s for a separate response) outlasts a 60 s task watchdog, so `tick` runs at least
# this often.
_TICK_MS = const(1000)


class ClientError(Exception):
    pass


class Timeout(ClientError):
    """No answer after the last retransmission."""


class Reset(ClientError):
    """The server answered the request with RST."""


def _is_timeout(err):
    return err.args and err.args[0] in (errno.ETIMEDOUT, errno.EAGAIN)


class Client:
    def __init__(self, sock, addr, ack_timeout_ms=ACK_TIMEOUT_MS,
                 ack_random_factor=ACK_RANDOM_FACTOR, max_retransmit=MAX_RETRANSMIT,
                 separate_timeout_ms=None, log=None, tick=None):
        self._sock = sock
        self._addr = addr
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_random_factor = ack_random_factor
        self.max_retransmit = max_retransmit
        if separate_timeout_ms is None:
            separate_timeout_ms = ack_timeout_ms * _SEPARATE_FACTOR
        self.separate_timeout_ms = separate_timeout_ms
        self._log = log
        self._tick = tick  # feeds the device's watchdog during long waits
        self._mid = random.getrandbits(16)
        self._last_separate = None  # (mid, token) of the last separate response ACKed
        self.transmissions = 0  # datagrams sent for the last request (stats, tests)
        self.timeouts_ms = []  # timeout used before each retransmission (tests)

    def _next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _send_empty(self, mtype, mid, addr):
        self._sock.sendto(coap.encode(coap.Message(mtype, coap.EMPTY, mid)), addr)

    def _recv(self, timeout_ms):
        """One datagram decoded, or None on timeout/garbage."""
        self._sock.settimeout(max(timeout_ms, 1) / 1000)
        try:
            data, addr = self._sock.recvfrom(_MAX_DATAGRAM)
        except OSError as err:
            if _is_timeout(err):
                return None, None
            raise
        try:
            return coap.decode(data), addr
        except ValueError:
            return False, addr  # not CoAP: ignore

    def request(self, code, path, payload=b"", content_format=None):
        """Send a CON request; return (code, content_format, payload) of the answer.
        The answer's Max-Age option (None if absent) is kept in `max_age`."""
        self.max_age = None
        msg = self.exchange(code, path, payload, content_format)
        self.max_age = msg.uint_option(coap.OPT_MAX_AGE)
        return msg.code, msg.content_format, msg.payload

    def exchange(self, code, path, payload=b"", content_format=None, options=None):
        """Send a CON request with extra options [(number, bytes)]; the answer Message."""
        mid = self._next_mid()
        token = random.getrandbits(32).to_bytes(_TOKEN_BYTES, "big")
        options = coap.path_options(path) + (options or [])
        if content_format is not None:
            options.append((coap.OPT_CONTENT_FORMAT, coap.uint_value(content_format)))
        datagram = coap.encode(coap.Message(coap.CON, code, mid, token, options, payload))
        timeout_ms = int(self.ack_timeout_ms * (1 + (self.ack_random_factor - 1)
                                                * random.getrandbits(16) / 65535))
        self.transmissions = 0
        self.timeouts_ms = []
        acked = False
        deadline = time.ticks_ms()
        while True:
            if not acked:
                if self.transmissions > self.max_retransmit:
                    raise Timeout("no answer after %d transmissions" % self.transmissions)
                self._sock.sendto(datagram, self._addr)
                self.transmissions += 1
                self.timeouts_ms.append(timeout_ms)
                deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
                timeout_ms *= 2
            answer = self._wait(mid, token, deadline)
            if answer is True:  # empty ACK: stop retransmitting, wait for the response
                acked = True
                deadline = time.ticks_add(time.ticks_ms(), self.separate_timeout_ms)
            elif answer is not None:
                return answer
            elif acked:
                raise Timeout("no separate response after the empty ACK")

    def _wait(self, mid, token, deadline):
        """Until deadline: the answer Message, True for an empty ACK, None on timeout."""
        while True:
            left_ms = time.ticks_diff(deadline, time.ticks_ms())
            if left_ms <= 0:
                return None
            if self._tick is not None:
                self._tick()
            msg, addr = self._recv(left_ms if left_ms < _TICK_MS else _TICK_MS)
            if msg is None:
                if left_ms > _TICK_MS:
                    continue  # a slice of the wait ended, not the wait
                return None
            if msg is False:
                continue
            if msg.mtype in (coap.ACK, coap.RST):
                if msg.mid != mid:
                    continue  # stale or foreign
                if msg.mtype == coap.RST:
                    raise Reset("request reset by the server")
                if msg.code == coap.EMPTY:
                    return True
                if msg.token == token:
                    return msg
                continue
            if msg.token == token and msg.code >> 5 >= 2:  # separate response
                if msg.mtype == coap.CON:
                    self._send_empty(coap.ACK, msg.mid, addr)
                    self._last_separate = (msg.mid, msg.token)
                return msg
            if msg.mtype == coap.CON:
                if self._last_separate == (msg.mid, msg.token):
                    self._send_empty(coap.ACK, msg.mid, addr)  # our ACK was lost
                else:
                    self._send_empty(coap.RST, msg.mid, addr)
