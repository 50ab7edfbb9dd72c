{{/*
The operator's permissions, one place in the chart. Keep equal to operator/klio_operator/rbac.py
(tests/helm/test_rbac.py fails when they differ).
*/}}

{{/* Rules for resources that only exist cluster-wide. */}}
{{- define "klio.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Cluster-wide too, and needed only when watching a list of namespaces (which exist). */}}
{{- define "klio.namespaceListRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Rules in each watched namespace. */}}
{{- define "klio.namespacedRules" -}}
- apiGroups: ["klio.io"]
  resources: ["kliojobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["klio.io"]
  resources: ["kliojobs/status"]
  verbs: ["patch"]
- apiGroups: ["klio.io"]
  resources: ["kliojobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
