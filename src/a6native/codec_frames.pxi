# Included by codec.pyx: frame headers and the stream splitter, in the order of their
# pure twin, a6runner/_codec_frames_py.py.

# --- frames ------------------------------------------------------------------------------

cdef Py_ssize_t SPLITTER_MIN_CAPACITY = 65_536  # first allocation for a frame still arriving

cdef int _check_frame_type(object frame_type) except -1:
    if not PyLong_Check(frame_type):
        raise TypeError(f"frame_type must be int, not {type(frame_type).__name__}")
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type {frame_type} is not in 0..255")
    return 0


def encode_frame_header(frame_type, length):
    """4 header bytes. FrameTooLarge if length > MAX_PAYLOAD_SIZE; ValueError if
    frame_type is not in 0..255 or length < 0."""
    _check_frame_type(frame_type)
    if not PyLong_Check(length):
        raise TypeError(f"length must be int, not {type(length).__name__}")
    if length < 0:
        raise ValueError(f"negative payload length {length}")
    if length > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"payload of {length} bytes exceeds {MAX_PAYLOAD_SIZE}")
    cdef bytes header = PyBytes_FromStringAndSize(NULL, proto.FRAME_HEADER_SIZE)
    _put_frame_header(<uint8_t*>PyBytes_AS_STRING(header), <uint8_t>frame_type,
                      <uint32_t>length)
    return header


cdef inline void _put_frame_header(uint8_t* p, uint8_t frame_type, uint32_t length) noexcept:
    p[0] = frame_type
    p[1] = <uint8_t>(length >> 16)
    p[2] = <uint8_t>(length >> 8)
    p[3] = <uint8_t>length


def decode_frame_header(header):
    """(frame_type, payload_length) from the first 4 bytes; DecodeError if fewer."""
    cdef const uint8_t* p
    if PyBytes_Check(header):
        if PyBytes_GET_SIZE(header) < proto.FRAME_HEADER_SIZE:
            raise DecodeError(f"frame header needs 4 bytes, got {PyBytes_GET_SIZE(header)}")
        p = <const uint8_t*>PyBytes_AS_STRING(header)
    else:
        header = memoryview(header).cast("B")
        if len(header) < proto.FRAME_HEADER_SIZE:
            raise DecodeError(f"frame header needs 4 bytes, got {len(header)}")
        header = bytes(header[:proto.FRAME_HEADER_SIZE])
        p = <const uint8_t*>PyBytes_AS_STRING(header)
    return p[0], (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


def encode_frame(frame_type, payload):
    """header + payload in one bytes object. FrameTooLarge if the payload is too long."""
    cdef bytes data = _payload_bytes(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    _check_frame_type(frame_type)
    if n > C_MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {n} bytes exceeds {MAX_PAYLOAD_SIZE}")
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, proto.FRAME_HEADER_SIZE + n)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(frame)
    _put_frame_header(out, <uint8_t>frame_type, <uint32_t>n)
    memcpy(out + proto.FRAME_HEADER_SIZE, PyBytes_AS_STRING(data), n)
    return frame


@cython.final
cdef class FrameSplitter:
    """Turns a byte stream cut at arbitrary points into whole frames.

    Memory is linear in the bytes buffered; a 16 MiB frame arriving in 64 KiB chunks costs
    O(total) copying, not O(n^2). Zero-length payloads yield ``(type, b"")``.
    """

    cdef uint8_t _header[proto.FRAME_HEADER_SIZE]
    cdef int _header_len
    # The payload of the frame being received, grown in place (we hold its only reference,
    # so _PyBytes_Resize may reallocate it); NULL between frames.
    cdef PyObject* _payload
    cdef Py_ssize_t _payload_len
    cdef Py_ssize_t _filled
    cdef Py_ssize_t _capacity
    cdef uint8_t _frame_type

    def __cinit__(self):
        self._header_len = 0
        self._payload = NULL
        self._filled = 0

    def __dealloc__(self):
        Py_XDECREF(self._payload)
        self._payload = NULL

    @property
    def pending(self):
        """Bytes buffered towards the next, incomplete frame (header bytes included)."""
        if self._payload != NULL:
            return proto.FRAME_HEADER_SIZE + self._filled
        return self._header_len

    @property
    def expected(self):
        """Bytes the incomplete frame will hold when complete (header included) once its
        header has arrived; the header bytes gathered so far before that; 0 between
        frames."""
        if self._payload != NULL:
            return proto.FRAME_HEADER_SIZE + self._payload_len
        return self._header_len

    cdef int _start_payload(self, uint8_t frame_type, Py_ssize_t length,
                            Py_ssize_t available) except -1:
        cdef Py_ssize_t capacity = available if available > SPLITTER_MIN_CAPACITY \
            else SPLITTER_MIN_CAPACITY
        if capacity > length:
            capacity = length
        payload = PyBytes_FromStringAndSize(NULL, capacity)
        Py_INCREF(payload)
        self._payload = <PyObject*>payload
        self._frame_type = frame_type
        self._payload_len = length
        self._capacity = capacity
        self._filled = 0
        return 0

    cdef Py_ssize_t _fill_payload(self, const uint8_t* p, Py_ssize_t n, list frames) except -1:
        """Copy up to ``n`` bytes into the payload in progress; bytes consumed."""
        cdef Py_ssize_t take = self._payload_len - self._filled
        cdef Py_ssize_t capacity
        cdef object payload
        if take > n:
            take = n
        if self._filled + take > self._capacity:
            # Geometric growth capped at the frame's size keeps copying linear.
            capacity = 2 * self._capacity
            if capacity < self._filled + take:
                capacity = self._filled + take
            if capacity > self._payload_len:
                capacity = self._payload_len
            _PyBytes_Resize(&self._payload, capacity)
            self._capacity = capacity
        memcpy(_raw_bytes_data(self._payload) + self._filled, p, take)
        self._filled += take
        if self._filled == self._payload_len:
            payload = <object>self._payload
            Py_XDECREF(self._payload)
            self._payload = NULL
            self._filled = 0
            frames.append((self._frame_type, payload))
        return take

    def feed(self, data):
        """Add bytes; return every frame completed by them, in order."""
        cdef bytes chunk = _payload_bytes(data)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(chunk)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(chunk)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t length, take
        cdef uint8_t frame_type
        cdef list frames = []
        while pos < n:
            if self._payload != NULL:
                pos += self._fill_payload(p + pos, n - pos, frames)
                continue
            if self._header_len == 0 and n - pos >= proto.FRAME_HEADER_SIZE:
                frame_type = p[pos]
                length = (<Py_ssize_t>p[pos + 1] << 16) | (<Py_ssize_t>p[pos + 2] << 8) \
                    | p[pos + 3]
                pos += proto.FRAME_HEADER_SIZE
                if n - pos >= length:
                    # Whole frame inside this chunk: slice it straight out.
                    frames.append(
                        (frame_type, PyBytes_FromStringAndSize(<const char*>p + pos, length))
                    )
                    pos += length
                else:
                    self._start_payload(frame_type, length, n - pos)
                continue
            # A header cut across chunks: gather its bytes first.
            take = proto.FRAME_HEADER_SIZE - self._header_len
            if take > n - pos:
                take = n - pos
            memcpy(self._header + self._header_len, p + pos, take)
            self._header_len += take
            pos += take
            if self._header_len == proto.FRAME_HEADER_SIZE:
                self._header_len = 0
                length = (<Py_ssize_t>self._header[1] << 16) \
                    | (<Py_ssize_t>self._header[2] << 8) | self._header[3]
                if length == 0:
                    frames.append((self._header[0], b""))
                else:
                    self._start_payload(self._header[0], length, n - pos)
        return frames
