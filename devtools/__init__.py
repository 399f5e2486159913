"""Development tooling, never installed with the product: demo data, `make up`, helpers of tests and bench."""
