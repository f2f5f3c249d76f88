{{- define "quantbench.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "quantbench.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "quantbench.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "quantbench.serviceAccountName" -}}
{{- default (include "quantbench.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- /* True when the cluster serves the Prometheus Operator's kind (e.g. "PodMonitor"). */ -}}
{{- define "quantbench.hasMonitoring" -}}
{{- if .root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind) -}}true{{- end -}}
{{- end -}}

{{- /* Relabelings that turn the quantbench.dev/* pod labels into benchmark and variant labels (not the
pod's step: the load generator exports its own `step` label, the batch size or request rate). */ -}}
{{- define "quantbench.podRelabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_label_quantbench_dev_benchmark]
  targetLabel: benchmark
- sourceLabels: [__meta_kubernetes_pod_label_quantbench_dev_variant]
  targetLabel: variant
{{- end -}}
