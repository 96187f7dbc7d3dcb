{{/* Chart name, shortened to 63 characters (the DNS label limit). */}}
{{- define "tasker-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: <release>-<chart>, or the release name when it contains the chart name.
Shortened so that the longest suffix the chart appends ("-leader-election") still fits 63 characters. */}}
{{- define "tasker-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tasker-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "tasker-operator.labels" -}}
helm.sh/chart: {{ include "tasker-operator.chart" . }}
{{ include "tasker-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tasker-operator
{{- end }}

{{/* Labels that select the release's objects. */}}
{{- define "tasker-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tasker-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select the manager Pods (not the migration Job's). */}}
{{- define "tasker-operator.managerSelectorLabels" -}}
{{ include "tasker-operator.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{- define "tasker-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tasker-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tasker-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret and key holding the operator's database URL. */}}
{{- define "tasker-operator.databaseSecretName" -}}
{{- if .Values.database.url }}
{{- printf "%s-database" (include "tasker-operator.fullname" .) }}
{{- else }}
{{- required "database.existingSecret or database.url is required" .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "tasker-operator.databaseSecretKey" -}}
{{- if .Values.database.url }}url{{ else }}{{ required "database.existingSecretKey is required" .Values.database.existingSecretKey }}{{ end }}
{{- end }}

{{/* "true" when the webhook certificate comes from cert-manager. */}}
{{- define "tasker-operator.certManager" -}}
{{- $mode := .Values.webhook.certificate.mode }}
{{- if eq $mode "cert-manager" }}true
{{- else if eq $mode "self-signed" }}false
{{- else if eq $mode "auto" }}{{ .Capabilities.APIVersions.Has "cert-manager.io/v1" }}
{{- else }}{{ fail (printf "webhook.certificate.mode must be auto, cert-manager or self-signed, not %q" $mode) }}
{{- end }}
{{- end }}

{{- define "tasker-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "tasker-operator.fullname" .) }}
{{- end }}

{{- define "tasker-operator.webhookCertSecretName" -}}
{{- printf "%s-webhook-cert" (include "tasker-operator.fullname" .) }}
{{- end }}

{{/* The container of the manager image with the database URL, shared by the Deployment and the migration Job. */}}
{{- define "tasker-operator.databaseEnv" -}}
- name: TASKER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tasker-operator.databaseSecretName" . }}
      key: {{ include "tasker-operator.databaseSecretKey" . }}
{{- end }}
