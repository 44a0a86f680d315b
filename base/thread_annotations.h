// Clang's thread-safety analysis (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html): which
// mutex guards which member and which functions need it held, stated on the declarations and
// checked at compile time by `-Wthread-safety` in the clang build (PHIVAULT_THREAD_SAFETY).
// Under GCC every macro is empty: the annotations are then documentation only.
//
// The capability named in an annotation must be a phivault::Mutex or phivault::SharedMutex
// (base/mutex.h); libstdc++'s std::mutex carries no annotations, so the analysis cannot see it.
#pragma once

#if defined(__clang__)
#define PHIVAULT_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PHIVAULT_THREAD_ANNOTATION(x)
#endif

// On a data member: read or written only with `x` held (reads may hold it shared).
#define GUARDED_BY(x) PHIVAULT_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: the pointee is read or written only with `x` held.
#define PT_GUARDED_BY(x) PHIVAULT_THREAD_ANNOTATION(pt_guarded_by(x))
// On a mutex member: it is taken after (or before) the named ones, never the other way round.
#define ACQUIRED_AFTER(...) PHIVAULT_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) PHIVAULT_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))

// On a function: the caller holds the capabilities exclusively / at least shared.
#define REQUIRES(...) PHIVAULT_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) PHIVAULT_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// On a function: the caller must not hold them (the function takes them itself).
#define EXCLUDES(...) PHIVAULT_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

// On a function: it acquires / releases the capabilities (exclusive or shared), or, with no
// argument on a member of a capability type, the object itself.
#define ACQUIRE(...) PHIVAULT_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) PHIVAULT_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) PHIVAULT_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) PHIVAULT_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) PHIVAULT_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
// On a function returning bool: it acquired the capability when it returned `result`.
#define TRY_ACQUIRE(...) PHIVAULT_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// On a function: tells the analysis the capability is held (checked at run time, if at all).
#define ASSERT_CAPABILITY(x) PHIVAULT_THREAD_ANNOTATION(assert_capability(x))
// On a function returning a mutex reference: the capability it returns.
#define RETURN_CAPABILITY(x) PHIVAULT_THREAD_ANNOTATION(lock_returned(x))

// On a class: its objects are capabilities (mutexes) / RAII holders of one.
#define CAPABILITY(x) PHIVAULT_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY PHIVAULT_THREAD_ANNOTATION(scoped_lockable)

// On a function the analysis cannot follow (a lock handed between threads, a hand-over-hand
// loop); say why next to each use.
#define NO_THREAD_SAFETY_ANALYSIS PHIVAULT_THREAD_ANNOTATION(no_thread_safety_analysis)
