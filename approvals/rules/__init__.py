"""The pure rules: functions of values, no database, no clock, no Django ORM."""
