"""A real Kubernetes control plane for tests (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) with simulated GPU node pools. See controlplane.py and kube.py."""
