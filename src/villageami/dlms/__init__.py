"""villageami.dlms"""
