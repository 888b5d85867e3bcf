//! The `[limits]` table (rules 4–8): how much may leave the wallet, per
//! transaction and within the rolling window, and what fees may be paid.
//!
//! [`LimitsTable`] is the one definition of every limit. Its fields, with
//! their serde attributes, are what `[limits]` may contain (the names, the
//! units as written, which limits are optional, `deny_unknown_fields`), and
//! the same struct, serialized, is the `limits` object of the canonical JSON
//! that [`Policy::digest`](super::Policy::digest) covers. [`Limits`] is the
//! validated table with one accessor per limit, and [`Limits::check`]
//! evaluates them, so a new limit is written in this file, plus its
//! [`Rule`] (see the checklist in the module docs of [`crate::policy`]).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::rules::{refuse, sat_per_vb, PolicyRefusal, Released, Rule};
use super::PolicyError;
use crate::withdrawal::review::WithdrawalSummary;

/// The `[limits]` table as read from the file and as written into the
/// canonical JSON (whose keys are sorted, so the field order here only
/// decides the order `deny_unknown_fields` lists the expected fields in).
///
/// A new limit must be optional, and absent it must serialize to nothing
/// (`#[serde(default, skip_serializing_if = "Option::is_none")]`), so that
/// installed policies keep their digest. `rolling_window_fee_sat` predates
/// that rule: absent, it is written as `null`, and stays so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsTable {
    per_transaction_sat: u64,
    /// At least 1, and at most what fits in `u64` seconds ([`Limits::new`]).
    rolling_window_hours: u64,
    rolling_window_sat: u64,
    max_fee_sat: u64,
    /// Written in sat/vB (`max_fee_rate_sat_per_vb`, up to three decimals),
    /// kept and hashed as exact msat/vB.
    #[serde(
        rename(
            deserialize = "max_fee_rate_sat_per_vb",
            serialize = "max_fee_rate_msat_per_vb"
        ),
        deserialize_with = "fee_rate_msat"
    )]
    max_fee_rate_msat_per_vb: u64,
    #[serde(default)]
    rolling_window_fee_sat: Option<u64>,
}

/// The amounts a policy allows, in satoshi (fee rate in msat/vB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits(LimitsTable);

impl Limits {
    /// Validates the `[limits]` table, which every policy must have.
    pub(super) fn new(table: Option<LimitsTable>) -> Result<Limits, PolicyError> {
        let table = table.ok_or(PolicyError::MissingLimits)?;
        if table.rolling_window_hours == 0 {
            return Err(PolicyError::InvalidLimit {
                field: "rolling_window_hours",
                reason: "a window of 0 hours limits nothing; give its length in hours, e.g. 24"
                    .to_owned(),
            });
        }
        if table.rolling_window_hours.checked_mul(3600).is_none() {
            return Err(PolicyError::InvalidLimit {
                field: "rolling_window_hours",
                reason: format!("{} hours is too long", table.rolling_window_hours),
            });
        }
        Ok(Limits(table))
    }

    /// The table, for the canonical JSON.
    pub(super) fn table(&self) -> &LimitsTable {
        &self.0
    }

    /// Most fee that may be paid within the rolling window, if bounded
    /// separately (fees always count in `rolling_window_sat` too).
    pub fn rolling_window_fee_sat(&self) -> Option<u64> {
        self.0.rolling_window_fee_sat
    }

    /// Most that may leave the wallet in one transaction (outputs that are not change, plus the fee).
    pub fn per_transaction_sat(&self) -> u64 {
        self.0.per_transaction_sat
    }

    /// Length of the rolling window in hours.
    pub fn rolling_window_hours(&self) -> u64 {
        self.0.rolling_window_hours
    }

    /// Length of the rolling window in seconds (no overflow: [`Limits::new`]
    /// checked it).
    pub(super) fn rolling_window_secs(&self) -> u64 {
        self.0.rolling_window_hours.saturating_mul(3600)
    }

    /// Most that may leave within the rolling window, fees included.
    pub fn rolling_window_sat(&self) -> u64 {
        self.0.rolling_window_sat
    }

    /// Highest absolute fee.
    pub fn max_fee_sat(&self) -> u64 {
        self.0.max_fee_sat
    }

    /// Highest fee rate, in millisatoshi per vB.
    pub fn max_fee_rate_msat_per_vb(&self) -> u64 {
        self.0.max_fee_rate_msat_per_vb
    }

    /// Rules 4–8, in order: [`Rule::PerTransactionLimit`],
    /// [`Rule::RollingWindowLimit`], [`Rule::FeeCap`], [`Rule::FeeRateCap`],
    /// [`Rule::RollingWindowFee`].
    pub(super) fn check(
        &self,
        summary: &WithdrawalSummary,
        released: Released,
    ) -> Result<(), PolicyRefusal> {
        let limits = &self.0;
        let released_in_window_sat = released.amount_sat;
        let leaving = summary.amount_leaving().to_sat();
        if leaving > limits.per_transaction_sat {
            return Err(refuse(
                Rule::PerTransactionLimit,
                format!(
                    "this transaction sends {leaving} sat out of the wallet, over the per-transaction limit of {} sat",
                    limits.per_transaction_sat
                ),
            ));
        }
        let total = released_in_window_sat.saturating_add(leaving);
        if total > limits.rolling_window_sat {
            return Err(refuse(
                Rule::RollingWindowLimit,
                format!(
                    "this transaction sends {leaving} sat and {released_in_window_sat} sat were already released \
                     in the last {} h: {total} sat in all, over the rolling limit of {} sat",
                    limits.rolling_window_hours, limits.rolling_window_sat
                ),
            ));
        }
        let fee = summary.fee.to_sat();
        if fee > limits.max_fee_sat {
            return Err(refuse(
                Rule::FeeCap,
                format!(
                    "fee {fee} sat is over this signer's cap of {} sat",
                    limits.max_fee_sat
                ),
            ));
        }
        let rate = summary.fee_rate_msat_per_vb();
        if rate > limits.max_fee_rate_msat_per_vb {
            return Err(refuse(
                Rule::FeeRateCap,
                format!(
                    "fee rate {} sat/vB ({fee} sat over {} vB) is over this signer's cap of {} sat/vB",
                    sat_per_vb(rate),
                    summary.vsize,
                    sat_per_vb(limits.max_fee_rate_msat_per_vb)
                ),
            ));
        }
        if let Some(budget) = limits.rolling_window_fee_sat {
            let fees = released.fee_sat.saturating_add(fee);
            if fees > budget {
                return Err(refuse(
                    Rule::RollingWindowFee,
                    format!(
                        "this transaction pays {fee} sat in fees and {} sat of fees were already released \
                         in the last {} h: {fees} sat in all, over the fee budget of {budget} sat",
                        released.fee_sat, limits.rolling_window_hours
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Largest msat value an `f64` holds exactly (2^53).
const MAX_EXACT_MSAT: f64 = 9_007_199_254_740_992.0;

/// Reads a fee rate in sat/vB (integer, or decimal with up to three places)
/// as an exact integer number of msat/vB.
fn fee_rate_msat<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct FeeRate;

    impl Visitor<'_> for FeeRate {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a non-negative fee rate in sat/vB with at most three decimals, such as 20 or 12.5",
            )
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            v.checked_mul(1000)
                .ok_or_else(|| E::custom(format!("fee rate {v} sat/vB is too large")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            let v = u64::try_from(v).map_err(|_| {
                E::custom(format!(
                    "fee rate {v} sat/vB is negative; give the highest rate this signer accepts"
                ))
            })?;
            self.visit_u64(v)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if !v.is_finite() || v < 0.0 {
                return Err(E::custom(format!(
                    "fee rate {v} sat/vB is not a non-negative number"
                )));
            }
            let scaled = v * 1000.0;
            let rounded = scaled.round();
            if rounded >= MAX_EXACT_MSAT {
                return Err(E::custom(format!("fee rate {v} sat/vB is too large")));
            }
            // Decimal fractions are not exact in binary: allow the rounding
            // error of the multiplication, nothing more.
            if (scaled - rounded).abs() > rounded.max(1.0) * 1e-12 {
                return Err(E::custom(format!(
                    "fee rate {v} sat/vB has more than three decimals; round it to a thousandth of a sat/vB"
                )));
            }
            // In range and integral (checked above), so the cast is exact.
            Ok(rounded as u64)
        }
    }

    d.deserialize_any(FeeRate)
}
