# FlatBuffers wire primitives shared by the codec's readers and builders (codec.pyx and
# the codec_*.pxi files it includes): little-endian access without alignment, walking a
# validated table, and laying out vtables, tables, strings and vectors front to back.
# Plain C helpers, inlined where they are used; no Python objects, no exceptions.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset


# --- little-endian access (no alignment assumed) ---------------------------------------

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* memcpy compiles to one unaligned load/store; byte assembly elsewhere. */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define A6_LITTLE_ENDIAN 1
    #else
    #define A6_LITTLE_ENDIAN 0
    #endif
    static inline uint16_t a6_load_u16(const uint8_t *p) {
    #if A6_LITTLE_ENDIAN
        uint16_t v; memcpy(&v, p, 2); return v;
    #else
        return (uint16_t)(p[0] | (p[1] << 8));
    #endif
    }
    static inline uint32_t a6_load_u32(const uint8_t *p) {
    #if A6_LITTLE_ENDIAN
        uint32_t v; memcpy(&v, p, 4); return v;
    #else
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
            | ((uint32_t)p[3] << 24);
    #endif
    }
    static inline void a6_store_u16(uint8_t *p, uint16_t v) {
    #if A6_LITTLE_ENDIAN
        memcpy(p, &v, 2);
    #else
        p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    #endif
    }
    static inline void a6_store_u32(uint8_t *p, uint32_t v) {
    #if A6_LITTLE_ENDIAN
        memcpy(p, &v, 4);
    #else
        p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    #endif
    }
    """
    uint16_t a6_load_u16(const uint8_t* p) noexcept nogil
    uint32_t a6_load_u32(const uint8_t* p) noexcept nogil
    void a6_store_u16(uint8_t* p, uint16_t v) noexcept nogil
    void a6_store_u32(uint8_t* p, uint32_t v) noexcept nogil


cdef inline uint16_t _get_u16(const uint8_t* p, int64_t i) noexcept nogil:
    return a6_load_u16(p + i)


cdef inline uint32_t _get_u32(const uint8_t* p, int64_t i) noexcept nogil:
    return a6_load_u32(p + i)


cdef inline void _put_u16(uint8_t* p, Py_ssize_t i, uint32_t v) noexcept nogil:
    a6_store_u16(p + i, <uint16_t>v)


cdef inline void _put_u32(uint8_t* p, Py_ssize_t i, uint64_t v) noexcept nogil:
    a6_store_u32(p + i, <uint32_t>v)


# --- reading: positions are int64 offsets into a validated payload ---------------------

cdef struct _Table:
    int64_t pos
    int64_t vtable
    int64_t vtable_size


cdef inline int64_t _field_unchecked(const uint8_t* p, const _Table* t, int field) noexcept:
    """Position of ``field`` in a validated table, or -1 when absent."""
    cdef int64_t entry = 4 + 2 * field
    cdef uint16_t off
    if entry + 2 > t.vtable_size:
        return -1
    off = _get_u16(p, t.vtable + entry)
    if off == 0:
        return -1
    return t.pos + off


cdef inline int64_t _target(const uint8_t* p, int64_t field_pos) noexcept:
    return field_pos + <int64_t>_get_u32(p, field_pos)


# --- writing: layout written forward, every size a multiple of 4 -------------------------

cdef inline Py_ssize_t _vtable_size(int fields) noexcept:
    return (4 + 2 * fields + 3) & ~3


cdef inline Py_ssize_t _string_size(Py_ssize_t n) noexcept:
    return 4 + ((n + 4) & ~3)  # length word, bytes, NUL, padding


cdef inline Py_ssize_t _byte_vector_size(Py_ssize_t n) noexcept:
    return 4 + ((n + 3) & ~3)


cdef inline Py_ssize_t _put_table(uint8_t* b, Py_ssize_t pos, int fields,
                                  const uint16_t* offsets, uint16_t table_size) noexcept:
    """Write a vtable at ``pos`` and the (zeroed) table right after it; the table position."""
    cdef int i
    cdef Py_ssize_t vt_size = 4 + 2 * fields
    cdef Py_ssize_t t = pos + _vtable_size(fields)
    _put_u16(b, pos, <uint32_t>vt_size)
    _put_u16(b, pos + 2, table_size)
    for i in range(fields):
        _put_u16(b, pos + 4 + 2 * i, offsets[i])
    memset(b + pos + vt_size, 0, t - pos - vt_size)
    _put_u32(b, t, <uint64_t>(t - pos))  # soffset to the vtable, which sits before
    memset(b + t + 4, 0, table_size - 4)
    return t


cdef inline void _link(uint8_t* b, Py_ssize_t slot, Py_ssize_t target) noexcept:
    _put_u32(b, slot, <uint64_t>(target - slot))


cdef inline Py_ssize_t _put_string(uint8_t* b, Py_ssize_t pos, const char* s,
                                   Py_ssize_t n) noexcept:
    cdef Py_ssize_t end = pos + _string_size(n)
    _put_u32(b, pos, <uint64_t>n)
    memcpy(b + pos + 4, s, n)
    memset(b + pos + 4 + n, 0, end - pos - 4 - n)
    return end


cdef inline Py_ssize_t _put_byte_vector(uint8_t* b, Py_ssize_t pos, const char* s,
                                        Py_ssize_t n) noexcept:
    cdef Py_ssize_t end = pos + _byte_vector_size(n)
    _put_u32(b, pos, <uint64_t>n)
    memcpy(b + pos + 4, s, n)
    memset(b + pos + 4 + n, 0, end - pos - 4 - n)
    return end
