//! Record matching: fuzzy matching of CRM-like records and sparse CDP fragments (people with
//! names, emails, phones, device ids, dates, addresses) into clusters, one per person. Column
//! profiling picks comparators and blocking keys when no configuration is given; strong
//! identifiers link records as the identity graph does, with a guard against shared values
//! that understands households (`names`); a Fellegi–Sunter model, its parameters estimated
//! without labels (u from random pairs with term frequencies, m from the strongly linked pairs
//! and EM, as Splink does), links the records that share none. Pure: rows in, clusters out.
#![allow(
    clippy::cast_precision_loss,
    reason = "counts of records, pairs and characters stay far below 2^52"
)]

mod cluster;
mod columns;
mod compare;
mod config;
mod import;
mod model;
mod names;
mod similarity;
#[cfg(test)]
mod tests;

pub use cluster::{Clusters, Joined, PairMetrics, pair_metrics};
pub use columns::{Plan, PlanError, plan};
pub use compare::{Comparator, Kind};
pub use config::{FieldConfig, ResolveConfig};
pub use import::{ImportOptions, Imported, import_events};
pub use model::{FieldModel, Links, Model, Resolution, Shared, SharedValue, resolve};

/// Records as text cells under named columns.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column names.
    pub headers: Vec<String>,
    /// Rows, each as long as `headers`.
    pub rows: Vec<Vec<String>>,
    /// For linking several files: the file each row came from; only rows of different files
    /// are compared. Empty: deduplicate one file.
    pub sources: Vec<u32>,
}

impl Table {
    /// The index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// A cell, trimmed; `""` when absent.
    pub fn cell(&self, row: usize, column: usize) -> &str {
        self.rows
            .get(row)
            .and_then(|r| r.get(column))
            .map_or("", |c| c.trim())
    }
}
