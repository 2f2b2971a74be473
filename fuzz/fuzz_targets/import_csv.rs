//! CRM-like records as `braid import` reads them (CSV with a header row): matching and the
//! identify events it makes never panic, and every event is a valid collection body's event.
#![no_main]

use braid_core::unify::matching::{ImportOptions, ResolveConfig, Table, import_events, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(data);
    let Ok(headers) = reader.headers() else {
        return;
    };
    let mut table = Table {
        headers: headers.iter().map(|h| h.trim().to_owned()).collect(),
        ..Table::default()
    };
    for record in reader.records().take(200) {
        let Ok(record) = record else {
            return;
        };
        table.rows.push(record.iter().map(str::to_owned).collect());
    }
    if table.headers.is_empty() || table.rows.is_empty() {
        return;
    }
    let config = ResolveConfig::default();
    let Ok(mut resolution) = resolve(&table, &config, &[0]) else {
        return;
    };
    let options = ImportOptions {
        id_type: "record_id",
        id_column: 0,
        skip: &[],
        at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        library: "braid-import",
    };
    let imported = import_events(&table, &mut resolution, &options);
    for event in &imported.events {
        let text = event.to_string();
        let limits = braid_core::catalogue::validate::Limits::default();
        braid_core::catalogue::validate::validate_event(0, &text, None, &limits)
            .expect("an import event is a valid event");
    }
});
