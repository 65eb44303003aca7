"""`controlplane bench`: what each layer costs on the machine it runs on, through real proxies
the product configures (see `l4_vs_l7`)."""
