"""The commands: `eventplane` (cli.server) runs and operates the servers; `epctl`,
for users of the API, comes with the API."""
