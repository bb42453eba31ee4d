{{/* The release's base name for every object. */}}
{{- define "prow-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; pass (dict "ctx" $ "component" "operator"). */}}
{{- define "prow-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "prow-operator.selector" . }}
{{- end -}}

{{/* The labels a component's pods are selected by. */}}
{{- define "prow-operator.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "prow-operator.jobNamespace" -}}
{{- $jobs := default "default" .Values.namespaces.jobs -}}
{{- if eq $jobs .Release.Namespace -}}
{{- fail (printf "namespaces.jobs (%s) must not be the release's namespace: the webhook keeps off its own namespace, so jobs there would not be checked" $jobs) -}}
{{- end -}}
{{- $jobs -}}
{{- end -}}

{{- define "prow-operator.testClusterApiService" -}}
{{- printf "%s-testcluster-api" (include "prow-operator.fullname" .) -}}
{{- end -}}

{{- define "prow-operator.testClusterApiNamespace" -}}
{{- default .Values.namespaces.pods .Values.testClusterApi.namespace -}}
{{- end -}}

{{- define "prow-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "prow-operator.webhookService" -}}
{{- printf "%s-webhook" (include "prow-operator.fullname" .) -}}
{{- end -}}

{{- define "prow-operator.webhookSecret" -}}
{{- default (printf "%s-webhook-tls" (include "prow-operator.fullname" .)) .Values.webhook.tls.secretName -}}
{{- end -}}

{{/* Pod-level and container-level hardening shared by both Deployments. */}}
{{- define "prow-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "prow-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Environment both binaries share: the API server's address, logging, the pod's name. */}}
{{- define "prow-operator.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: RUST_LOG
  value: {{ .Values.logging.level | quote }}
{{- with .Values.kubernetesApi.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ $.Values.kubernetesApi.port | quote }}
{{- end }}
{{- end -}}
