"""Relational store on SQLAlchemy Core: MySQL/MariaDB (pymysql) in AWS, SQLite as the embedded default."""
