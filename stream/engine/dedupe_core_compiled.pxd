# C types for the compiled build of dedupe_core.py (Cython pure-Python mode: the .py is the
# only source; setup.py compiles it into the module stream.engine.dedupe_core_compiled).
import cython

cdef class PartitionWindow:
    cdef public long long size
    cdef long long _mask
    cdef long long _largest
    cdef long long[::1] _slots
    cdef long long _used
    cdef long long _latest

    @cython.locals(h=cython.longlong, slots=cython.longlong[::1], mask=cython.longlong,
                   horizon=cython.longlong, i=cython.longlong, free=cython.longlong,
                   seen=cython.longlong)
    cpdef bint admit(self, long long offset, object event_id) except -1

    @cython.locals(slots=cython.longlong[::1], fresh=cython.longlong[::1], mask=cython.longlong,
                   live=cython.longlong, capacity=cython.longlong, j=cython.longlong,
                   seen=cython.longlong, h=cython.longlong, i=cython.longlong)
    cdef void _rebuild(self, long long horizon) except *

    cpdef long long warm_start(self, long long stored_offset)
