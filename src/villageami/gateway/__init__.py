"""villageami.gateway"""
