#!/bin/sh
# Boot hook: stands in for enabled services where no systemd runs (the lab re-runs it after
# an instance is started again). On systemd hosts the units in templates/systemd/ do this.
exec /opt/{{project}}/bin/svc start-all
