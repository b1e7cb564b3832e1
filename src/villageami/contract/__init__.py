"""villageami.contract"""
