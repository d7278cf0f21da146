# C types for the compiled build of summary_core.py (Cython pure-Python mode: the .py is the
# only source; setup.py compiles it into the module stream.metrics.score.summary_core_compiled).
import cython

cpdef str channel_label(object channel, object channels)

@cython.locals(ts=cython.longlong, bucket=cython.longlong, first=cython.longlong,
               last=cython.longlong, base=cython.longlong, key=cython.longlong,
               lowest=cython.longlong, i=cython.longlong, count=object, rec=list, counts=dict,
               channel=str, label=str)
cpdef tuple summary(object events, object index, long long bucket_ms, long long n_activities,
                    object channels)

@cython.locals(entries=list, merged=cython.Py_ssize_t, name=object, events=object, e=object,
               ts=cython.longlong, bucket=cython.longlong, first_bucket=cython.longlong,
               runs=object, i=object, rec=list)
cpdef tuple pending_entries(object items, object read, object index, long long bucket_ms,
                            long long n_activities, object channels)

@cython.locals(out=list, name=object, events=object, e=object)
cpdef list to_read(object items, long long edge, object additive)

@cython.locals(out=list, rows=list, row=list, lo=cython.longlong, width=cython.Py_ssize_t,
               n=cython.Py_ssize_t, i=cython.Py_ssize_t, k=object, first=cython.Py_ssize_t,
               last=cython.Py_ssize_t, counts=object)
cpdef list bucket_runs(object buckets, long long evaluated)

cpdef long long digit_value(Py_UCS4 ch)

@cython.locals(buckets=dict, i=cython.Py_ssize_t, k=cython.longlong, text=str, ch=Py_UCS4,
               v=object)
cpdef dict bucket_counts(object runs, long long evaluated, Py_ssize_t n_activities)

@cython.locals(counts=list)
cdef inline void _put(dict buckets, long long k, Py_ssize_t i, object v,
                      Py_ssize_t n_activities) except *
