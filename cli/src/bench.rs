pub(crate) async fn run(_a: &BenchArgs) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args)]
pub(crate) struct BenchArgs {}
