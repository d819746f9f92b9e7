//! [`counters!`](crate::counters!): a set of event counters and its snapshot, declared from
//! one list of names.

/// Declares, from one list of documented names, a public struct of `u64` counts (the
/// snapshot a caller reads) and a struct of `AtomicU64` counters (what the code bumps
/// from any thread) whose `snapshot()` loads each one (relaxed: each count is exact, the
/// set is not one instant).
///
/// The snapshot struct gets the attributes written on it (derives included) and each
/// field the attributes written on its name; the counters struct derives `Debug` and
/// `Default`, and its fields have its visibility.
///
/// ```
/// use std::sync::atomic::Ordering;
///
/// imggo_core::counters! {
///     /// What the worker has done.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
///     pub struct WorkStats;
///     /// The live counters behind [`WorkStats`].
///     pub(crate) struct WorkCounters {
///         /// Items taken.
///         taken,
///         /// Items finished.
///         done,
///     }
/// }
///
/// let c = WorkCounters::default();
/// c.taken.fetch_add(2, Ordering::Relaxed);
/// c.done.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(c.snapshot(), WorkStats { taken: 2, done: 1 });
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[$stats_meta:meta])*
        $stats_vis:vis struct $stats:ident;
        $(#[$counters_meta:meta])*
        $counters_vis:vis struct $counters:ident {
            $( $(#[$field_meta:meta])* $field:ident ),* $(,)?
        }
    ) => {
        $(#[$stats_meta])*
        $stats_vis struct $stats {
            $( $(#[$field_meta])* pub $field: u64, )*
        }

        $(#[$counters_meta])*
        #[derive(Debug, Default)]
        $counters_vis struct $counters {
            $( $counters_vis $field: ::std::sync::atomic::AtomicU64, )*
        }

        impl $counters {
            /// Every count, as it is now.
            #[allow(dead_code)]
            $counters_vis fn snapshot(&self) -> $stats {
                $stats {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )*
                }
            }
        }
    };
}
