module quantbench.dev/cluster-node-programs

go 1.26.0
