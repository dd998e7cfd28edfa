"""Load-benchmark harness: Storefront against two reference apps on the same PostgreSQL replica."""
