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
