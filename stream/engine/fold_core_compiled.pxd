# C types for the compiled build of fold_core.py (Cython pure-Python mode: the .py is the only
# source; setup.py compiles it into the module stream.engine.fold_core_compiled). Event times,
# offsets and minutes stay Python ints: each goes on into a dict key or a handler call, where a
# C integer would be boxed again per event.
import cython

@cython.locals(accepted=cython.Py_ssize_t, sample_every=cython.Py_ssize_t, relays=cython.bint)
cpdef object fold_records(object records, object ctx, object max_ts, object now_ms,
                          object into=*, object window=*, object warm_until=*, object relay_hw=*)
