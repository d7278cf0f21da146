# C types for the compiled build of session_core.py (Cython pure-Python mode: the .py is the
# only source; setup.py compiles it into the module stream.metrics.session_core_compiled).
import cython

cdef class Session:
    cdef public long long first
    cdef public long long last
    cdef public long long page_views
    cdef public long long conversions
    cdef public str platform
    cdef public str channel
    cpdef void absorb(self, Session other)
    cpdef long long closes_at(self, long long timeout_ms, long long cap_ms)
    cpdef bint engaged(self, long long engaged_after_ms)

cdef Session _session_of(tuple hit)

cpdef long long _first_of(Session s)

@cython.locals(ts=cython.longlong, latest=Session, new=Session, near=list,
               target=Session, s=Session, lo=cython.longlong, hi=cython.longlong)
cpdef void add_hit(list sessions, tuple hit, long long timeout, long long cap) except *

@cython.locals(s=Session, open_=list, closed=list, hit=tuple)
cpdef tuple settle(list sessions, object hits, long long watermark, long long timeout,
                   long long cap)

@cython.locals(due=cython.longlong, at=cython.longlong, s=Session, open_=list, closed=list)
cpdef tuple settle_field(object before, object hits, long long watermark, long long timeout,
                         long long cap)

@cython.locals(s=Session, parts=list)
cpdef str pack(object sessions)

@cython.locals(out=list, text=str, parts=list, i=cython.Py_ssize_t, s=Session)
cpdef list unpack(object value)

@cython.locals(updates=list, name=object, before=object, hits=object)
cpdef list settle_fields(object stored, object items, long long watermark, long long timeout,
                         long long cap, long long engaged_after, dict counters, dict hashes)

@cython.locals(value=object, due=object, closed=list, session=Session)
cdef void _settle_into(list updates, object name, object before, object hits,
                       long long watermark, long long timeout, long long cap,
                       long long engaged_after, dict counters, dict hashes) except *

@cython.locals(i=cython.Py_ssize_t, name=str)
cdef void _add(dict bucket, tuple names, Py_ssize_t measure, object n) except *

@cython.locals(minute=cython.longlong, duration=cython.longlong, page_views=cython.longlong,
               names=tuple, prefixes=tuple, bucket=dict, durations=dict, suffix=str, name=str)
cpdef void record_closed(Session session, long long engaged_after, dict counters,
                         dict hashes) except *
